//! Single-core encode throughput on a JSON-lines corpus: `cargo run --profile fastdev -p
//! pythia-engine --example encode_speed -- CORPUS.jsonl.zst [TOKENIZER.json]`.

use std::io::BufRead;
use std::time::Instant;

use pythia_engine::corpus::{open_lines, parse_document, DocumentFields};
use pythia_engine::tokenizer::Tokenizer;

#[path = "common/cpu.rs"]
mod cpu;
use cpu::cpu_seconds;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let corpus = std::path::PathBuf::from(&args[1]);
    let tok_path = args.get(2).cloned().unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../python/pythia_data/data/20B_tokenizer.json"
        )
        .into()
    });
    let tok = Tokenizer::from_file(tok_path).unwrap();
    let fields = DocumentFields::new("text", None);
    let texts: Vec<String> = open_lines(&corpus, None)
        .unwrap()
        .split(b'\n')
        .map(|l| l.unwrap())
        .filter(|l| !l.is_empty())
        .map(|l| {
            parse_document(&l, &fields, &mut Vec::new())
                .unwrap()
                .text
                .into_owned()
        })
        .collect();
    let bytes: usize = texts.iter().map(|t| t.len()).sum();
    let rounds = 10;
    let mut best = f64::MAX;
    let mut n = 0;
    // Warm-up round (page faults, caches), not timed.
    for t in &texts {
        n += tok.encode(t).len();
    }
    let cpu0 = cpu_seconds();
    for _ in 0..rounds {
        let t0 = Instant::now();
        for t in &texts {
            n += tok.encode(t).len();
        }
        best = best.min(t0.elapsed().as_secs_f64());
    }
    let cpu = cpu_seconds() - cpu0;
    println!(
        "{} docs, {:.1} MB, {} tokens/round: best wall {:.1} MB/s, CPU-time {:.1} MB/s",
        texts.len(),
        bytes as f64 / 1e6,
        n / (rounds + 1),
        bytes as f64 / best / 1e6,
        (bytes * rounds) as f64 / cpu / 1e6
    );
}
