#!/usr/bin/env bash
# Tokenizer and pipeline scaling with cores, on a machine with more (and quieter) cores than the
# 2-vCPU development VM: per-document encode on one core against the tokenize pipeline and batch
# encode on 1, 2, 4, 8 and 16 threads, each run pinned to that many distinct physical cores.
# Build first, then run from the repository root (BIN may point at a copied binary):
#
#   cargo build --release -p pythia-engine --example tokenize_speed
#   bash benches/cpu_scaling.sh
#
# THREADS lists the worker counts (default "2 1 4 8 16"); READERS the reading designs to time
# at each ("auto", or any of 0 = workers read in turns, 1 = a dedicated reader thread).
# SHARDS (default "2x8 4x4 8x2") times K processes of T workers each, on K × T cores, each
# tokenizing its own input stream, as `--shard-index I --num-shards K` runs do on one machine:
# one zstd stream is read by one thread at a time, which caps a single run on many cores.
# FILES_THREADS (default "16") times one run over FILES (default "16 12") input files (each the
# 300 MB stream) at each of those thread counts, with PARALLEL_FILES (default "1 0") files at
# once: 1 reads them one after another, 0 is the default (one file per two threads from 12
# threads on). 12 files on 16 threads leave a short second wave (4 files on 8 lanes), where the
# workers of the lanes with no file left join the files still running.
# The input is the bundled sample repeated 48 times as one zstd stream (~300 MB of text), as in
# benches/bench_tokenize_pipeline.py; from 8 threads on, 192 times (~1.2 GB), so that starting
# every worker is a small share of the run. There the one-core encode is not timed again (it
# takes long): compare with the pipeline ÷ batch encode ratio, or with the 1-thread figures.
set -euo pipefail
BIN=${BIN:-target/release/examples/tokenize_speed}
export TOKENIZER=${TOKENIZER:-python/pythia_data/data/20B_tokenizer.json}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sample=python/pythia_data/data/sample-pile.jsonl.zst
for _ in $(seq "${COPIES:-48}"); do cat "$sample"; done >"$tmp/small.jsonl.zst"
for _ in $(seq "${COPIES_MANY:-192}"); do cat "$sample"; done >"$tmp/large.jsonl.zst"

lscpu | grep -E '^(Model name|Thread|Core|Socket|CPU\(s\)|L2|L3|Hypervisor)' || true
# One logical CPU per physical core, so that N threads never share a core's SMT siblings.
mapfile -t cpus < <(lscpu -p=CPU,CORE | grep -v '^#' | sort -t, -k2,2n -u | cut -d, -f1 | sort -n)
echo "distinct physical cores: ${#cpus[@]}"
for n in ${THREADS-2 1 4 8 16}; do
    ((n <= ${#cpus[@]})) || continue
    set=$(IFS=,; echo "${cpus[*]:0:n}")
    for reader in ${READERS-auto}; do
        env=(BATCH=1 ROUNDS=3)
        corpus=$tmp/small.jsonl.zst
        ((n == 2)) && env=(BATCH=1 ROUNDS=7)
        ((n >= 8)) && env=(BATCH=1 ROUNDS=2 PIPELINE_ONLY=1) && corpus=$tmp/large.jsonl.zst
        [[ $reader == auto ]] || env+=(DEDICATED_READER="$reader")
        echo "== $n threads on CPUs $set: ${env[*]}"
        env "${env[@]}" taskset -c "$set" "$BIN" "$n" "$corpus"
    done
done

for spec in ${SHARDS-2x8 4x4 8x2}; do
    k=${spec%x*} t=${spec#*x}
    ((k * t <= ${#cpus[@]})) || continue
    echo "== $k processes x $t threads, each on its own copy of the large input"
    for ((i = 0; i < k; i++)); do
        set=$(IFS=,; echo "${cpus[*]:i*t:t}")
        ln -f "$tmp/large.jsonl.zst" "$tmp/shard$i.jsonl.zst"
        PIPELINE_ONLY=1 ROUNDS=3 taskset -c "$set" "$BIN" "$t" "$tmp/shard$i.jsonl.zst" \
            >"$tmp/shard$i.log" &
    done
    wait
    # The processes start their rounds within a fraction of a second of each other, so a
    # round's rates add up to the machine's.
    cat "$tmp"/shard*.log | awk '/^round/ {
        for (i = 1; i <= NF; i++) if ($i == "MB/s") { sum[$2] += $(i - 1); break }
    } END { for (r in sum) printf "round %s total %.1f MB/s\n", r, sum[r] }' | sort
    rm -f "$tmp"/shard*
done

# One run over many files: hard links of the 300 MB stream, so that no two are the same path.
for i in $(seq -w 0 15); do ln -f "$tmp/small.jsonl.zst" "$tmp/file$i.jsonl.zst"; done
for n in ${FILES_THREADS-16}; do
    ((n <= ${#cpus[@]})) || continue
    set=$(IFS=,; echo "${cpus[*]:0:n}")
    for count in ${FILES-16 12}; do
        inputs=("$tmp"/file*.jsonl.zst)
        for files in ${PARALLEL_FILES-1 0}; do
            echo "== one run of $n threads over $count files, PARALLEL_FILES=$files"
            PIPELINE_ONLY=1 ROUNDS=2 PARALLEL_FILES="$files" taskset -c "$set" "$BIN" "$n" \
                "${inputs[@]:0:count}"
        done
    done
done
