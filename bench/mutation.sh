#!/usr/bin/env bash
# Mutation testing of the numerical core (src/xornet/core/{activations,losses,optimizers,
# model,training}.py) against the fast core tests (tests/test_core_*.py), with mutmut 3
# configured in pyproject.toml's [tool.mutmut]. Not part of CI: too slow. A full run
# from scratch took 16-18 min with MUTMUT_CHILDREN=2 (2 cores, AMD EPYC or Intel Xeon); reruns
# reuse the verdicts cached in mutants/ for functions that did not change (rm -rf
# mutants/ to start over).
#
#   bench/mutation.sh                 # run, then print the survivors and the score
#   MUTMUT_CHILDREN=2 bench/mutation.sh
#   mutmut show <name>                # the diff of one mutant
set -euo pipefail
cd "$(dirname "$0")/.."

mutmut run --max-children "${MUTMUT_CHILDREN:-1}"

echo
echo "Mutants not killed:"
mutmut results
mutmut export-cicd-stats >/dev/null
python - <<'PY'
import json

s = json.load(open("mutants/mutmut-cicd-stats.json"))
checked = s["total"] - s["skipped"]
killed = s["killed"] + s["timeout"]
print(
    f"total {s['total']}, killed {s['killed']}, survived {s['survived']}, "
    f"timeout {s['timeout']}, no tests {s['no_tests']}, suspicious {s['suspicious']}, "
    f"skipped {s['skipped']}"
)
print(f"score: {killed}/{checked} = {100 * killed / checked:.1f} % (killed + timeout over total - skipped)")
PY
