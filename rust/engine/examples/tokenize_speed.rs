//! The tokenize pipeline against the bare tokenizer, in one process on the same text:
//! `cargo run --release -p pythia-engine --example tokenize_speed -- THREADS CORPUS.jsonl.zst...`
//! prints per-document encode MB/s on one core, the pipeline's MB/s on THREADS workers, and
//! the ratio the pipeline goal is stated in (pipeline ÷ THREADS × encode). Environment:
//! `CHUNK_BYTES` overrides the chunk size; `PIPELINE_ONLY=1` skips the encode measurement (to
//! profile the pipeline alone).

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Instant;

use pythia_engine::corpus::{open_lines, parse_document, DocumentFields};
use pythia_engine::tokenize::{tokenize_files, TokenizeOptions};
use pythia_engine::tokenizer::Tokenizer;

#[path = "common/cpu.rs"]
mod cpu;
use cpu::cpu_seconds;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(threads) = args
        .get(1)
        .and_then(|t| t.parse::<usize>().ok())
        .filter(|_| args.len() > 2)
    else {
        eprintln!("usage: tokenize_speed THREADS CORPUS.jsonl.zst...");
        std::process::exit(2);
    };
    let inputs: Vec<PathBuf> = args[2..].iter().map(PathBuf::from).collect();
    let tok = Tokenizer::from_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../python/pythia_data/data/20B_tokenizer.json"
    ))
    .unwrap();
    let fields = DocumentFields::new("text", None);
    let mut texts = Vec::new();
    for p in &inputs {
        for line in open_lines(p, None).unwrap().split(b'\n') {
            let line = line.unwrap();
            if !line.is_empty() {
                texts.push(
                    parse_document(&line, &fields, &mut Vec::new())
                        .unwrap()
                        .text
                        .into_owned(),
                );
            }
        }
    }
    let bytes: usize = texts.iter().map(|t| t.len()).sum();
    let mb = bytes as f64 / 1e6;
    let encode = if std::env::var_os("PIPELINE_ONLY").is_some() {
        None
    } else {
        for t in &texts {
            tok.encode(t); // warm the caches, as the pipeline's workers are warm after a chunk
        }
        let t0 = Instant::now();
        for t in &texts {
            tok.encode(t);
        }
        Some(mb / t0.elapsed().as_secs_f64())
    };

    let dir = std::env::temp_dir().join(format!("tokenize-speed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut opts = TokenizeOptions::new(inputs, dir.join("out"));
    opts.threads = threads;
    if let Ok(cb) = std::env::var("CHUNK_BYTES") {
        opts.chunk_bytes = cb.parse().expect("CHUNK_BYTES");
    }
    let mut best = f64::MAX;
    let mut cpu = 0.0;
    for _ in 0..3 {
        let (t0, c0) = (Instant::now(), cpu_seconds());
        tokenize_files(&tok, &opts, &mut |_| true).unwrap();
        best = best.min(t0.elapsed().as_secs_f64());
        cpu = cpu_seconds() - c0;
    }
    std::fs::remove_dir_all(&dir).unwrap();
    let pipeline = mb / best;
    print!(
        "{mb:.1} MB of text: pipeline on {threads} threads {pipeline:.1} MB/s ({:.1} ms CPU per MB)",
        cpu * 1e3 / mb
    );
    match encode {
        Some(e) => println!(
            "; encode {e:.1} MB/s on one core; pipeline = {:.0} % of {threads} × encode",
            100.0 * pipeline / (threads as f64 * e)
        ),
        None => println!(),
    }
}
