"""`python -m tests.functional.ct_controller ARGS...`: tenet-controller whose desired state for every node also
holds the conntrack, NAT and conjunction flows of `tests.unit.ct_flows`, as a feature using them would add
them. Everything else (os-ken, the encoder, bundles, the flow-stats reader, reconcile) is the real process.
"""

from __future__ import annotations

import sys

from controller.main import main
from controller.pipeline.compile import Compiler
from controller.pipeline.state import NodeState, Section
from tests.unit.ct_flows import COOKIE, ct_flows

_compile_node = Compiler.compile_node


def _with_ct_flows(self: Compiler, name: str) -> NodeState:
    state = _compile_node(self, name)
    return NodeState({**state.sections, COOKIE: Section(COOKIE, tuple(ct_flows()))})


Compiler.compile_node = _with_ct_flows  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
