#!/usr/bin/env bash
# Static analysis of the coordinator with Slither, offline.
#
#   bash tools/slither.sh            # writes bench/results/slither.{json,txt}; exit 1 on a new
#                                    # medium or high finding (one not triaged in
#                                    # docs/static-analysis.md and listed in ACCEPTED below)
#
# Slither 0.11.6 requires web3 < 8 and the project pins web3 8.0.0, so Slither lives in its own
# virtual environment (.cache/slither-venv, created on first use from PyPI), never in .venv.
#
# Compiler: crytic-compile's default `solc` platform runs `solc --combined-json ...`, which the
# project's solc-js shim (tools/solc_shim.js) does not speak. Its `solc-json` platform takes a
# standard-JSON *input* file as the target and runs `solc --standard-json --allow-paths DIR`, which
# the shim does. So this script writes the standard-JSON input of the production sources with the
# project's settings (brownie-config.yaml: solc version, evmVersion, optimizer, viaIR) and hands
# it to Slither with `--compile-force-framework solc-json --solc <shim>`. No network is needed
# once the venv exists.
set -euo pipefail
cd "$(dirname "$0")/.."

SLITHER_VERSION=0.11.6
CRYTIC_COMPILE_VERSION=0.4.2
VENV=.cache/slither-venv
WORK=.cache/slither
OUT=bench/results
mkdir -p "$WORK" "$OUT"

if ! "$VENV/bin/slither" --version 2>/dev/null | grep -qx "$SLITHER_VERSION"; then
    echo "== installing slither-analyzer==$SLITHER_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "slither-analyzer==$SLITHER_VERSION" "crytic-compile==$CRYTIC_COMPILE_VERSION"
fi

echo "== standard-JSON input and compiler (project settings)"
SOLC=$(.venv/bin/python - "$WORK/input.json" <<'EOF'
import json
import sys

from fl_client.compile import CONTRACTS_DIR, find_compiler
from fl_client.config import PROJECT_ROOT, load_config

settings = load_config().compiler
sources = {
    path.relative_to(PROJECT_ROOT).as_posix(): {"content": path.read_text(encoding="utf-8")}
    for path in sorted(CONTRACTS_DIR.glob("*.sol"))  # production sources; contracts/test/ left out
}
standard_input = {
    "language": "Solidity",
    "sources": sources,
    "settings": {
        "evmVersion": settings.evm_version,
        "optimizer": {"enabled": settings.optimizer_enabled, "runs": settings.optimizer_runs},
        "viaIR": settings.via_ir,
        "remappings": [],
    },
}
with open(sys.argv[1], "w", encoding="utf-8") as handle:
    json.dump(standard_input, handle, indent=1)
print(find_compiler(settings.version))
EOF
)
echo "compiler: $SOLC ($("$SOLC" --version | tail -1))"

echo "== slither $SLITHER_VERSION"
rm -f "$WORK/raw.json"
"$VENV/bin/slither" "$WORK/input.json" \
    --compile-force-framework solc-json \
    --solc "$SOLC" \
    --fail-none \
    --disable-color \
    --json "$WORK/raw.json" \
    >"$OUT/slither.txt" 2>&1 || { cat "$OUT/slither.txt"; exit 2; }
sed -i "s#$(pwd)/##g" "$OUT/slither.txt"

# Medium and high findings triaged in docs/static-analysis.md: detector|function (or contract).
ACCEPTED=$(cat <<'EOF'
incorrect-shift|_averageWord
incorrect-equality|commit
incorrect-equality|submit
incorrect-equality|reveal
incorrect-equality|submitMasked
incorrect-equality|finalize
incorrect-equality|_segmentOf
EOF
)

SLITHER_VERSION=$SLITHER_VERSION .venv/bin/python - "$WORK/raw.json" "$OUT/slither.json" "$ACCEPTED" <<'EOF'
import json
import os
import sys
from collections import Counter

report = json.load(open(sys.argv[1], encoding="utf-8"))
if not report.get("success"):
    sys.exit(f"slither failed: {report.get('error')}")
accepted = {tuple(line.split("|")) for line in sys.argv[3].split()}
findings = report["results"].get("detectors", [])
by_impact = Counter(f["impact"] for f in findings)
print("findings by impact:", dict(sorted(by_impact.items())))
new = []
summary = []
order = {"High": 0, "Medium": 1, "Low": 2, "Informational": 3, "Optimization": 4}
for finding in sorted(findings, key=lambda f: (order.get(f["impact"], 9), f["check"])):
    first = finding["elements"][0] if finding["elements"] else {}
    parent = first.get("type_specific_fields", {}).get("parent", {})
    where = first.get("name", "") if first.get("type") == "function" else parent.get("name", "")
    key = (finding["check"], where)
    serious = finding["impact"] in ("High", "Medium")
    status = ("triaged" if key in accepted else "NEW") if serious else "listed"
    summary.append(
        {
            "impact": finding["impact"],
            "confidence": finding["confidence"],
            "check": finding["check"],
            "function": where,
            "status": status,
            "description": finding["description"].replace(os.getcwd() + "/", "").strip(),
        }
    )
    if serious:
        print(f"  {finding['impact']:6} {finding['check']:22} {where:16} {status}")
        if key not in accepted:
            new.append(finding["description"])
with open(sys.argv[2], "w", encoding="utf-8") as handle:
    json.dump(
        {
            "command": "bash tools/slither.sh",
            "slither": os.environ.get("SLITHER_VERSION", ""),
            "by_impact": dict(sorted(by_impact.items())),
            "findings": summary,
        },
        handle,
        indent=1,
    )
    handle.write("\n")
if new:
    print("\nmedium/high findings not triaged in docs/static-analysis.md:")
    print("\n".join(new))
    sys.exit(1)
print("no untriaged medium or high finding")
EOF
