#!/usr/bin/env bash
# A/A check of the instruction-count bench: runs benches/benches/instructions.rs
# N times (default 10) on unchanged code and prints, per bench, the
# instruction count (callgrind's Ir) of every run, and the spread
# (max - min) / min. A spread above zero is noise a regression limit must
# stay above (design §9, rule 5). Needs valgrind, gungraun-runner
# (ci/setup.sh installs both) and jq. Each run takes about 10 s.
#
#   benches/instructions-drift.sh [RUNS]
set -euo pipefail
runs="${1:-10}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v jq >/dev/null || { echo "instructions-drift: needs jq (apt-get install jq)" >&2; exit 1; }
out="$(mktemp -d /tmp/rtmc-instructions-drift.XXXXXX)"
cargo bench --locked -p rtmc-benches --bench instructions --no-run
for i in $(seq 1 "$runs"); do
  cargo bench --locked -q -p rtmc-benches --bench instructions -- --output-format=json \
    >"$out/run$i.json" 2>"$out/run$i.err"
  jq -r '[(.module_path | sub("^instructions::"; "")) + "::" + .id,
          .profiles[0].data.total.metrics.Ir.values.new] | @tsv' "$out/run$i.json" \
    >"$out/run$i.tsv"
done
echo "instruction counts (Ir) over $runs runs; raw JSON in $out"
cat "$out"/run*.tsv | awk -F'\t' '
  !($1 in min) { order[++n] = $1; min[$1] = $2; max[$1] = $2 }
  { runs[$1] = runs[$1] " " $2; if ($2 < min[$1]) min[$1] = $2; if ($2 > max[$1]) max[$1] = $2 }
  END {
    for (i = 1; i <= n; i++) {
      b = order[i]
      printf "%-58s min %9d  max %9d  spread %.4f%%  runs:%s\n", b, min[b], max[b], 100 * (max[b] - min[b]) / min[b], runs[b]
    }
  }'
