//! The tokenize pipeline against the bare tokenizer, in one process on the same text:
//! `cargo run --release -p pythia-engine --example tokenize_speed -- THREADS CORPUS.jsonl.zst...`
//! prints per-document encode MB/s on one core, the pipeline's MB/s on THREADS workers, and
//! the ratio the pipeline goal is stated in (pipeline ÷ THREADS × encode), round by round and
//! the median. Environment: `ROUNDS` (default 3); `CHUNK_BYTES` overrides the chunk size;
//! `PIPELINE_ONLY=1` skips the encode measurement (to profile the pipeline alone).

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
    let pipeline_only = std::env::var_os("PIPELINE_ONLY").is_some();
    let rounds: usize = std::env::var("ROUNDS").map_or(3, |r| r.parse().expect("ROUNDS"));
    if !pipeline_only {
        for t in &texts {
            tok.encode(t); // warm the caches, as the pipeline's workers are warm after a chunk
        }
    }

    let dir = std::env::temp_dir().join(format!("tokenize-speed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut opts = TokenizeOptions::new(inputs, dir.join("out"));
    opts.threads = threads;
    if let Ok(cb) = std::env::var("CHUNK_BYTES") {
        opts.chunk_bytes = cb.parse().expect("CHUNK_BYTES");
    }
    // Encode and pipeline take turns, so that each round's ratio compares the same minute of
    // a shared machine (neighbours change its speed from one minute to the next).
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let encode = (!pipeline_only).then(|| {
            let t0 = Instant::now();
            for t in &texts {
                tok.encode(t);
            }
            mb / t0.elapsed().as_secs_f64()
        });
        let _ = std::fs::remove_file(dir.join("out.bin"));
        let (t0, c0) = (Instant::now(), cpu_seconds());
        tokenize_files(&tok, &opts, &mut |_| true).unwrap();
        let pipeline = mb / t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - c0;
        print!(
            "round {round}: {mb:.1} MB of text, pipeline on {threads} threads {pipeline:.1} MB/s \
             ({:.2} ms CPU per MB)",
            cpu * 1e3 / mb
        );
        match encode {
            Some(e) => {
                let ratio = pipeline / (threads as f64 * e);
                ratios.push(ratio);
                println!(
                    "; encode {e:.1} MB/s on one core; pipeline = {:.0} % of {threads} × encode",
                    100.0 * ratio
                )
            }
            None => println!(),
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
    if !ratios.is_empty() {
        ratios.sort_by(f64::total_cmp);
        println!(
            "pipeline ÷ ({threads} × encode): median {:.1} %, range {:.1}–{:.1} %",
            100.0 * ratios[ratios.len() / 2],
            100.0 * ratios[0],
            100.0 * ratios[ratios.len() - 1]
        );
    }
}
