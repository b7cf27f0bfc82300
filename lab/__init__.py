"""The lab on one machine: nodes as network namespaces, each with its own Open vSwitch, and pods."""
