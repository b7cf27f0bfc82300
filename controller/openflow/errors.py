"""OpenFlow errors and requests in words, for logs and for what `tenetctl node show` reports."""

from __future__ import annotations

from typing import Any


def error_text(msg: Any) -> str:
    """An OFPT_ERROR in words, e.g. `OFPET_FLOW_MOD_FAILED(5) OFPFMFC_TABLE_FULL(1)`, or an experimenter's
    (ONF bundle errors in OpenFlow 1.3: `experimenter 0x4f4e4600 ONFERR_ET_BUNDLE_...`)."""
    ofp = msg.datapath.ofproto
    if msg.type == ofp.OFPET_EXPERIMENTER:
        exp_type = getattr(msg, "exp_type", None)
        names = [n for n in dir(ofp) if n.startswith("ONFERR_") and getattr(ofp, n) == exp_type]
        name = f"{names[0]}({exp_type})" if names else f"type {exp_type}"
        return f"error experimenter {getattr(msg, 'experimenter', 0):#x} {name}"
    try:
        return f"error {ofp.ofp_error_type_to_str(msg.type)} {ofp.ofp_error_code_to_str(msg.type, msg.code)}"
    except (AttributeError, KeyError, TypeError):
        return f"error type {msg.type} code {msg.code}"


def describe(msg: Any) -> str:
    """A request as an error report names it: its message class, and the bundle operation for a control."""
    name = type(msg).__name__
    if name == "ONFBundleCtrlMsg":
        ofp = msg.datapath.ofproto
        kinds = {
            ofp.ONF_BCT_OPEN_REQUEST: "open",
            ofp.ONF_BCT_COMMIT_REQUEST: "commit",
            ofp.ONF_BCT_CLOSE_REQUEST: "close",
        }
        return f"bundle {kinds.get(msg.type, msg.type)} (bundle {msg.bundle_id:#x})"
    return name
