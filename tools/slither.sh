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
# project's settings (brownie-config.yaml: solc version, evmVersion, optimizer, viaIR, remappings)
# and hands it to Slither with `--compile-force-framework solc-json --solc <shim>`. No network is
# needed once the venv exists.
#
# Third-party code: OpenZeppelin and Solady (node_modules/, through the remappings) are compiled
# and analysed with ours, so calls into them are seen, but findings are reported only when they
# touch our code: `--include-paths` keeps a finding when at least one of its elements is in our
# contracts/ (see INCLUDE below). `--filter-paths node_modules` would be the wrong filter: it
# drops a finding as soon as *any* element is in node_modules, i.e. also one of ours that involves
# a library. crytic's `--exclude-dependencies` does not apply: the solc-json platform marks no file
# as a dependency.
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
    for path in sorted(CONTRACTS_DIR.rglob("*.sol"))
    if "test" not in path.relative_to(CONTRACTS_DIR).parts  # contracts/test/ is test-only
}
standard_input = {
    "language": "Solidity",
    "sources": sources,
    "settings": {
        "evmVersion": settings.evm_version,
        "optimizer": {"enabled": settings.optimizer_enabled, "runs": settings.optimizer_runs},
        "viaIR": settings.via_ir,
        "remappings": list(settings.remappings),  # OpenZeppelin and Solady from node_modules
    },
}
with open(sys.argv[1], "w", encoding="utf-8") as handle:
    json.dump(standard_input, handle, indent=1)
print(find_compiler(settings.version))
EOF
)
echo "compiler: $SOLC ($("$SOLC" --version | tail -1))"

echo "== slither $SLITHER_VERSION"
# Slither matches this regex against each element's absolute path (after stripping leading and
# trailing "." and "/", and anything before a ".."): a path with a contracts/ directory and no
# node_modules/ directory, i.e. our contracts/**/*.sol and not @openzeppelin/contracts/.
INCLUDE='^(?!.*/node_modules/).*/contracts/'
rm -f "$WORK/raw.json"
"$VENV/bin/slither" "$WORK/input.json" \
    --compile-force-framework solc-json \
    --solc "$SOLC" \
    --include-paths "$INCLUDE" \
    --fail-none \
    --disable-color \
    --json "$WORK/raw.json" \
    >"$OUT/slither.txt" 2>&1 || { cat "$OUT/slither.txt"; exit 2; }
sed -i "s#$(pwd)/##g" "$OUT/slither.txt"

# Medium and high findings triaged in docs/static-analysis.md, one line per key:
#   detector|where|count
# `where` is Contract.function for a finding on a function (the contract that declares it),
# Contract.variable for a state variable (uninitialized-state), Contract.function.variable for a
# local variable, Contract for a contract (locked-ether). `count` is how many findings with that
# key were triaged: more of them fails as NEW (exit 1); fewer is reported as a stale entry.
ACCEPTED=$(cat <<'EOF'
incorrect-exp|CoordinatorBase._finishRound|1
incorrect-exp|ClosingUnit._writeNext|3
incorrect-exp|SecureAggregationUnit.closeMasked|1
incorrect-return|FLCoordinator.finalize|1
incorrect-shift|PackedVectors.averageOf|2
uninitialized-state|CoordinatorBase._config|5
uninitialized-state|CoordinatorBase._tierThresholds|1
uninitialized-state|CoordinatorBase._tierRewards|2
uninitialized-state|CoordinatorBase._rdpPerParticipation|1
uninitialized-state|CoordinatorBase._rdpConversion|1
uninitialized-state|CoordinatorBase._eligibility|1
uninitialized-state|CoordinatorBase._progress|1
uninitialized-state|CoordinatorBase._commitments|1
uninitialized-state|CoordinatorBase._bondsReturned|1
uninitialized-state|CoordinatorBase._closeStartedAt|1
uninitialized-state|CoordinatorBase._members|1
uninitialized-state|CoordinatorBase._memberState|1
uninitialized-state|CoordinatorBase._maskKeys|1
weak-prng|CoordinatorBase._checkpointDue|1
divide-before-multiply|FLCoordinator._checkMaskedLimits|1
divide-before-multiply|SecureAggregationUnit.submitMasked|1
divide-before-multiply|SecureAggregationUnit.closeMasked|2
incorrect-equality|CoordinatorBase._checkpointDue|2
incorrect-equality|FLCoordinator.allowed|1
incorrect-equality|FLCoordinator.cohort|1
incorrect-equality|FLCoordinator.roundDetails|1
locked-ether|CommitRevealUnit|1
uninitialized-local|ClosingUnit._takeEntries.measure|1
uninitialized-local|SecureAggregationUnit.finalize.end|1
unused-return|RelayUnit._register|1
unused-return|ClosingUnit._measureToNext|1
EOF
)

status=0
SLITHER_VERSION=$SLITHER_VERSION .venv/bin/python - "$WORK/raw.json" "$OUT/slither.json" "$ACCEPTED" <<'EOF' || status=$?
import json
import os
import sys
from collections import Counter

report = json.load(open(sys.argv[1], encoding="utf-8"))
if not report.get("success"):
    sys.exit(f"slither failed: {report.get('error')}")
accepted = {}
for line in sys.argv[3].split():
    check, place, count = line.split("|")
    accepted[(check, place)] = int(count)
findings = report["results"].get("detectors", [])
order = {"High": 0, "Medium": 1, "Low": 2, "Informational": 3, "Optimization": 4}
by_impact = dict(sorted(Counter(f["impact"] for f in findings).items(), key=lambda i: order.get(i[0], 9)))
print("findings by impact:", by_impact)


def parent_name(element):
    parent = element.get("type_specific_fields", {}).get("parent", {})
    if parent.get("type") == "function":
        return f"{parent_name(parent)}.{parent['name']}"
    return parent.get("name", "")


def where(finding):
    """The finding's key (see ACCEPTED): its first element, named with its parents."""
    if not finding["elements"]:
        return ""
    first = finding["elements"][0]
    if first.get("type") == "contract":
        return first["name"]
    if first.get("type") in ("function", "variable"):
        return f"{parent_name(first)}.{first['name']}".lstrip(".")
    return parent_name(first)


def serious(finding):
    return finding["impact"] in ("High", "Medium")


def key(finding):
    return (finding["check"], where(finding))


found = Counter(key(f) for f in findings if serious(f))
impact_of = {key(f): f["impact"] for f in findings if serious(f)}
new_keys = {k for k, count in found.items() if count > accepted.get(k, 0)}
summary = []
new = []
for finding in sorted(findings, key=lambda f: (order.get(f["impact"], 9), f["check"], where(f))):
    status = ("NEW" if key(finding) in new_keys else "triaged") if serious(finding) else "listed"
    description = finding["description"].replace(os.getcwd() + "/", "").strip()
    summary.append(
        {
            "impact": finding["impact"],
            "confidence": finding["confidence"],
            "check": finding["check"],
            "where": where(finding),
            "status": status,
            "description": description,
        }
    )
    if status == "NEW":
        new.append(description)
for k in sorted(found, key=lambda k: (order[impact_of[k]], k)):
    status = "NEW" if k in new_keys else "triaged"
    print(f"  {impact_of[k]:6} {k[0]:22} {k[1]:40} {found[k]} found, {accepted.get(k, 0)} triaged: {status}")
with open(sys.argv[2], "w", encoding="utf-8") as handle:
    json.dump(
        {
            "command": "bash tools/slither.sh",
            "slither": os.environ.get("SLITHER_VERSION", ""),
            "scope": "contracts/**/*.sol but contracts/test/; findings only in node_modules/ left out",
            "by_impact": by_impact,
            "findings": summary,
        },
        handle,
        indent=1,
    )
    handle.write("\n")
for k, count in sorted(accepted.items()):
    if found.get(k, 0) < count:
        print(f"stale ACCEPTED entry {k[0]}|{k[1]}|{count}: {found.get(k, 0)} found (lower or remove it)")
if new:
    print("\nmedium/high findings not triaged in docs/static-analysis.md (more than ACCEPTED lists):")
    print("\n".join(new))
    sys.exit(1)
print("no untriaged medium or high finding")
EOF
echo "== done in ${SECONDS}s"
exit "$status"
