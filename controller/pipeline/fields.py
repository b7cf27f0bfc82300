"""Register layout on br-int: one place, one register per field, with the bits each one uses.

Registers are zeroed for every packet that enters the bridge, including packets from the tunnel, so a
field carries nothing from one switch to the next.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.pipeline.ir import SetField


@dataclass(frozen=True, slots=True)
class RegField:
    name: str
    register: str  # the Nicira register holding it, e.g. "reg0"
    bits: int  # width used, from bit 0

    def __str__(self) -> str:
        return f"{self.name} ({self.register}[0..{self.bits - 1}])"


# reg0[0..15]: network id of the packet's logical network; set by classify, rewritten by l3 routing.
NETWORK = RegField("network", "reg0", 16)
# reg1[0..23]: tenant id; set by classify, never rewritten, so routing cannot leave the tenant.
TENANT = RegField("tenant", "reg1", 24)
# reg2: flags.
FLAGS = RegField("flags", "reg2", 1)
#   bit 0: the packet came from another node (tunnel, uplink or fabric link): flood only locally.
FLAG_FROM_REMOTE = 0x1
# reg3[0..15]: the local ofport chosen by l2, read by the output table (output_reg).
OUT_PORT = RegField("out_port", "reg3", 16)

ALL_FIELDS = (NETWORK, TENANT, FLAGS, OUT_PORT)


def enter_network(network_id: int, tenant_id: int, *, from_remote: bool) -> tuple[SetField, ...]:
    """The register writes that put a packet into its network and tenant, as classify does."""
    writes = (SetField(NETWORK.register, network_id), SetField(TENANT.register, tenant_id))
    return (*writes, SetField(FLAGS.register, FLAG_FROM_REMOTE)) if from_remote else writes
