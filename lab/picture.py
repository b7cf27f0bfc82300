"""A picture of a running Tenet: nodes as boxes holding their pods, one line per network, colours by tenant.

Plain SVG written by hand: no plotting library to install, and any browser shows it.
"""

from __future__ import annotations

from html import escape
from typing import Any

PALETTE = ["#1f6fb4", "#c8372d", "#2e8b57", "#8e44ad", "#d4820f", "#16838f"]
BUS_TOP, BUS_GAP = 70, 30
POD_W, POD_H, POD_GAP = 150, 46, 14
NODE_PAD, NODE_GAP = 16, 40
LEFT = 260  # room for the network labels


def topology_svg(snapshot: dict[str, Any]) -> str:
    """`snapshot`: {"nodes": [name], "networks": [API network docs], "pods": [{name, node, network, ip}]}."""
    networks = sorted(snapshot["networks"], key=lambda n: (n["tenant"], n["name"]))
    tenants = sorted({n["tenant"] for n in networks})
    colour = {tenant: PALETTE[i % len(PALETTE)] for i, tenant in enumerate(tenants)}
    bus_y = {f"{n['tenant']}/{n['name']}": BUS_TOP + i * BUS_GAP for i, n in enumerate(networks)}
    nodes_top = BUS_TOP + len(networks) * BUS_GAP + 30
    pods_by_node = {node: [p for p in snapshot["pods"] if p["node"] == node] for node in snapshot["nodes"]}
    most = max((len(p) for p in pods_by_node.values()), default=0)
    lanes = 10 + 6 * len(networks)  # left margin of a node: one vertical lane per network, clear of the pods
    node_w = lanes + POD_W + NODE_PAD
    node_h = 40 + max(most, 1) * (POD_H + POD_GAP) + NODE_PAD
    width = LEFT + len(snapshot["nodes"]) * (node_w + NODE_GAP) + 20
    height = nodes_top + node_h + 60
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        '<text x="20" y="32" font-size="20" font-weight="bold">Tenet: tenants, networks, nodes and pods</text>',
    ]
    for network in networks:
        key = f"{network['tenant']}/{network['name']}"
        y = bus_y[key]
        segment = f"VNI {network['vni']}" if network["encap"] == "vxlan" else f"VLAN {network['vlan']}"
        dash = "" if network["encap"] == "vxlan" else ' stroke-dasharray="8 5"'
        parts.append(
            f'<line x1="{LEFT - 10}" y1="{y}" x2="{width - 20}" y2="{y}" stroke="{colour[network["tenant"]]}"'
            f' stroke-width="3"{dash}/>'
        )
        label = f"{key}  {segment}  {network['subnet']}"
        parts.append(
            f'<text x="20" y="{y + 5}" font-size="13" fill="{colour[network["tenant"]]}">{escape(label)}</text>'
        )
    for column, node in enumerate(snapshot["nodes"]):
        x = LEFT + column * (node_w + NODE_GAP)
        parts.append(
            f'<rect x="{x}" y="{nodes_top}" width="{node_w}" height="{node_h}" rx="10" fill="#f4f4f4" stroke="#555"/>'
        )
        parts.append(f'<text x="{x + lanes}" y="{nodes_top + 26}" font-size="15" font-weight="bold">'
                     f"{escape(node)} (br-int)</text>")  # fmt: skip
        for row, pod in enumerate(pods_by_node[node]):
            tenant = pod["network"].split("/")[0]
            px, py = x + lanes, nodes_top + 40 + row * (POD_H + POD_GAP)
            bus = bus_y.get(pod["network"])
            ink = colour.get(tenant, "#333")
            if bus is not None:
                lane = x + 8 + 6 * list(bus_y).index(pod["network"])
                middle = py + POD_H / 2
                parts.append(
                    f'<polyline points="{lane},{bus} {lane},{middle} {px},{middle}" fill="none" stroke="{ink}"'
                    ' stroke-width="1.5"/>'
                )
                parts.append(f'<circle cx="{lane}" cy="{bus}" r="3.5" fill="{ink}"/>')
            parts.append(
                f'<rect x="{px}" y="{py}" width="{POD_W}" height="{POD_H}" rx="6" fill="white"'
                f' stroke="{colour.get(tenant, "#333")}" stroke-width="2"/>'
            )
            parts.append(
                f'<text x="{px + 8}" y="{py + 19}" font-size="14" font-weight="bold">{escape(pod["name"])}</text>'
            )
            detail = f"{pod.get('ip') or '?'}  {pod['network']}"
            parts.append(f'<text x="{px + 8}" y="{py + 37}" font-size="12">{escape(detail)}</text>')
    legend_y = height - 24
    legend = "  ".join(f"{t}" for t in tenants)
    parts.append(
        f'<text x="20" y="{legend_y}" font-size="12" fill="#333">solid: VXLAN, dashed: VLAN; tenants: '
        f"{escape(legend)}; pods of different tenants never reach each other</text>"
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
