//! The tokenize pipeline against the bare tokenizer, in one process on the same text:
//! `cargo run --release -p pythia-engine --example tokenize_speed -- THREADS CORPUS.jsonl.zst...`
//! prints per-document encode MB/s on one core, the pipeline's MB/s on THREADS workers, and
//! the ratio the pipeline goal is stated in (pipeline ÷ THREADS × encode), round by round and
//! the median. Environment: `TOKENIZER` (default: the bundled file); `ROUNDS` (default 3); `CHUNK_BYTES` overrides the chunk size;
//! `DEDICATED_READER=0|1` overrides whether one thread does all the reading;
//! `PARALLEL_FILES=N` how many of several CORPUS files are tokenized at once (0: the default);
//! `PIPELINE_ONLY=1` skips the encode measurement (to profile the pipeline alone, or to run
//! several processes at once, one per shard); `BATCH=1`
//! also times batch encode (the same texts on a pool of THREADS rayon workers, tokenizing
//! alone: the ceiling of any pipeline on those cores) and prints pipeline ÷ batch.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Instant;

use rayon::prelude::*;

use pythia_engine::corpus::{open_lines, parse_document, DocumentFields, LineChunk, LineChunker};
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
    // TOKENIZER overrides the bundled file's build-time path (for a binary run on another machine).
    let tok = Tokenizer::from_file(std::env::var("TOKENIZER").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../python/pythia_data/data/20B_tokenizer.json"
        )
        .into()
    }))
    .unwrap();
    let pipeline_only = std::env::var_os("PIPELINE_ONLY").is_some();
    let batch = std::env::var_os("BATCH").is_some();
    // The texts are kept only to be encoded outside the pipeline; otherwise only counted, so
    // that several of these processes started together (one per shard) start their rounds
    // together too.
    let keep_texts = !pipeline_only || batch;
    let fields = DocumentFields::new("text", None);
    let mut texts = Vec::new();
    let mut bytes = 0;
    let mut scratch = Vec::new();
    for p in &inputs {
        for line in open_lines(p, None).unwrap().split(b'\n') {
            let line = line.unwrap();
            if !line.is_empty() {
                let text = parse_document(&line, &fields, &mut scratch).unwrap().text;
                bytes += text.len();
                if keep_texts {
                    texts.push(text.into_owned());
                }
            }
        }
    }
    let mb = bytes as f64 / 1e6;
    let rounds: usize = std::env::var("ROUNDS").map_or(3, |r| r.parse().expect("ROUNDS"));
    if !pipeline_only {
        for t in &texts {
            tok.encode(t); // warm the caches, as the pipeline's workers are warm after a chunk
        }
    }

    // What one worker at a time can read: the pipeline's ceiling however many workers it has.
    let t0 = Instant::now();
    for (f, p) in inputs.iter().enumerate() {
        let mut chunker = LineChunker::open(p, f, 4 << 20, None).unwrap();
        let mut chunk = LineChunk::default();
        while let Some(c) = chunker.next_chunk_in(chunk).unwrap() {
            chunk = c;
        }
    }
    println!(
        "reading alone (decompression, line splitting) on one thread: {:.1} MB/s of text",
        mb / t0.elapsed().as_secs_f64()
    );

    let dir = std::env::temp_dir().join(format!("tokenize-speed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut opts = TokenizeOptions::new(inputs, dir.join("out"));
    opts.threads = threads;
    if let Ok(d) = std::env::var("DEDICATED_READER") {
        opts.dedicated_reader = Some(d == "1");
    }
    if let Ok(n) = std::env::var("PARALLEL_FILES") {
        let n: usize = n.parse().expect("PARALLEL_FILES");
        opts.parallel_files = (n > 0).then_some(n);
    }
    if let Ok(cb) = std::env::var("CHUNK_BYTES") {
        opts.chunk_bytes = cb.parse().expect("CHUNK_BYTES");
    }
    let batch_pool = batch.then(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    });
    // Encode and pipeline take turns, so that each round's ratio compares the same minute of
    // a shared machine (neighbours change its speed from one minute to the next).
    let mut ratios = Vec::new();
    let mut batch_ratios = Vec::new();
    for round in 0..rounds {
        let encode = (!pipeline_only).then(|| {
            let t0 = Instant::now();
            for t in &texts {
                tok.encode(t);
            }
            mb / t0.elapsed().as_secs_f64()
        });
        let batch = batch_pool.as_ref().map(|pool| {
            let t0 = Instant::now();
            let ids: usize = pool.install(|| texts.par_iter().map(|t| tok.encode(t).len()).sum());
            std::hint::black_box(ids);
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
        if let Some(b) = batch {
            let ratio = pipeline / b;
            batch_ratios.push(ratio);
            println!(
                "         batch encode on {threads} threads {b:.1} MB/s; pipeline = {:.0} % of batch",
                100.0 * ratio
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
    summarize(&format!("pipeline ÷ ({threads} × encode)"), ratios);
    summarize("pipeline ÷ batch encode", batch_ratios);
}

fn summarize(what: &str, mut ratios: Vec<f64>) {
    if !ratios.is_empty() {
        ratios.sort_by(f64::total_cmp);
        println!(
            "{what}: median {:.1} %, range {:.1}–{:.1} %",
            100.0 * ratios[ratios.len() / 2],
            100.0 * ratios[0],
            100.0 * ratios[ratios.len() - 1]
        );
    }
}
