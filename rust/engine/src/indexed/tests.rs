use std::path::PathBuf;

use super::*;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/gpt-neox-v1.0")
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pythia-indexed-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Token j of document i in the golden cases (see the fixtures' README).
fn golden_token(i: usize, j: usize, size: usize, modulus: u64) -> i64 {
    if j + 1 == size {
        0
    } else {
        ((i as u64 * 1_000_003 + j as u64 * 7919) % modulus) as i64
    }
}

#[test]
fn reads_and_rewrites_golden_cases() {
    for (name, modulus) in [
        ("toy_e1", 65000),
        ("zero_len_docs", 65000),
        ("int32_tokens", 1_000_003),
        ("long_docs", 65000),
    ] {
        let ds = IndexedDataset::open(fixtures().join(name)).unwrap();
        let dir = tmpdir(name);
        let mut b = IndexedDatasetBuilder::create(dir.join(name), ds.dtype()).unwrap();
        for i in 0..ds.len() {
            let size = ds.index().size(i) as usize;
            let tokens = ds.get_i64(i, 0, None).unwrap();
            let expected: Vec<i64> = (0..size)
                .map(|j| golden_token(i, j, size, modulus))
                .collect();
            assert_eq!(tokens, expected, "{name} item {i}");
            b.add_item_i64(&tokens).unwrap();
            b.end_document();
        }
        b.finish().unwrap();
        for ext in ["idx", "bin"] {
            let ours = std::fs::read(dir.join(format!("{name}.{ext}"))).unwrap();
            let theirs = std::fs::read(fixtures().join(format!("{name}.{ext}"))).unwrap();
            assert!(ours == theirs, "{name}.{ext} differs from GPT-NeoX's");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn unfinished_builder_leaves_nothing() {
    let dir = tmpdir("unfinished");
    {
        let mut b = IndexedDatasetBuilder::create(dir.join("x"), DType::U16).unwrap();
        b.add_document_u32(&[1, 2, 3]).unwrap();
        assert!(b.add_document_u32(&[70_000]).is_err());
    }
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn merge_shifts_doc_idx() {
    let dir = tmpdir("merge");
    let mut b = IndexedDatasetBuilder::create(dir.join("a"), DType::U16).unwrap();
    b.add_item_u32(&[1, 2]).unwrap();
    b.add_item_u32(&[3]).unwrap();
    b.end_document();
    b.finish().unwrap();
    let mut b = IndexedDatasetBuilder::create(dir.join("b"), DType::U16).unwrap();
    b.add_document_u32(&[4]).unwrap();
    b.add_document_u32(&[]).unwrap();
    b.finish().unwrap();
    merge_datasets(dir.join("m"), &[dir.join("a"), dir.join("b")]).unwrap();
    let m = IndexedDataset::open(dir.join("m")).unwrap();
    assert_eq!(m.index().sizes_vec(), vec![2, 1, 1, 0]);
    assert_eq!(m.index().doc_idx_vec(), vec![0, 2, 3, 4]);
    assert_eq!(m.get_i64(2, 0, None).unwrap(), vec![4]);
    assert!(merge_datasets(dir.join("a"), &[dir.join("a")]).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn merge_of_a_bin_that_shrinks_meanwhile_is_an_error() {
    // The bytes are copied from the file (copy_file_range), not from the map that validated
    // them: a file cut short since then must not give a short output.
    let dir = tmpdir("merge-shrink");
    let mut b = IndexedDatasetBuilder::create(dir.join("a"), DType::U16).unwrap();
    b.add_document_u32(&[1, 2, 3, 4]).unwrap();
    b.finish().unwrap();
    let a = IndexedDataset::open(dir.join("a")).unwrap();
    let mut m = IndexedDatasetBuilder::create(dir.join("m"), DType::U16).unwrap();
    m.append_dataset(&a).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(bin_path(dir.join("a")))
        .unwrap()
        .set_len(6)
        .unwrap();
    let err = m.append_dataset(&a).unwrap_err().to_string();
    assert!(
        err.contains("shrank from 8 to 6 bytes while being merged"),
        "{err}"
    );
    drop(m);
    drop(a);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn merge_of_a_bin_replaced_meanwhile_copies_the_bytes_that_were_opened() {
    // A dataset rewritten since it was opened (tokenize and merge rename a new .bin into
    // place) must not lend its new bytes to the old index: the output pairs each index with
    // the bytes validated against it.
    let dir = tmpdir("merge-replaced");
    for (name, tokens) in [("a", [1, 2, 3, 4]), ("new", [9, 9, 9, 9])] {
        let mut b = IndexedDatasetBuilder::create(dir.join(name), DType::U16).unwrap();
        b.add_document_u32(&tokens).unwrap();
        b.finish().unwrap();
    }
    let a = IndexedDataset::open(dir.join("a")).unwrap();
    std::fs::rename(bin_path(dir.join("new")), bin_path(dir.join("a"))).unwrap();
    std::fs::rename(idx_path(dir.join("new")), idx_path(dir.join("a"))).unwrap();
    let mut m = IndexedDatasetBuilder::create(dir.join("m"), DType::U16).unwrap();
    m.append_dataset(&a).unwrap();
    m.finish().unwrap();
    let merged = IndexedDataset::open(dir.join("m")).unwrap();
    assert_eq!(merged.get_i64(0, 0, None).unwrap(), vec![1, 2, 3, 4]);
    drop(a);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_headers_are_errors_not_panics() {
    let good = std::fs::read(fixtures().join("toy_e1.idx")).unwrap();
    let dir = tmpdir("corrupt");
    let path = dir.join("c.idx");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (good[..10].to_vec(), "shorter than"),
        (good[..good.len() - 1].to_vec(), "truncated"),
        ([b"NOTANIDX\0".as_slice(), &good[9..]].concat(), "bad magic"),
        (
            {
                let mut g = good.clone();
                g[17] = 6;
                g
            },
            "float",
        ),
        (
            {
                let mut g = good.clone();
                g[9] = 3;
                g
            },
            "version",
        ),
        (
            {
                let mut g = good.clone();
                g[18] = 255;
                g
            },
            "truncated",
        ),
    ];
    for (bytes, needle) in cases {
        std::fs::write(&path, &bytes).unwrap();
        let err = IndexFile::open(&path).unwrap_err().to_string();
        assert!(err.contains(needle) && err.contains("c.idx"), "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn output_prefixes_must_name_a_file() {
    let dir = std::env::temp_dir().join(format!("pythia-prefix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for bad in [
        PathBuf::new(),
        PathBuf::from("."),
        PathBuf::from(".."),
        PathBuf::from("out/"),
        PathBuf::from("out/.."),
        dir.clone(),
    ] {
        let err = super::check_output_prefix(&bad).unwrap_err().to_string();
        assert!(err.contains("not a dataset prefix"), "{bad:?}: {err}");
        assert!(IndexedDatasetBuilder::create(&bad, DType::U16).is_err());
    }
    assert!(dir.join("x.bin").metadata().is_err());
    for good in ["pile", "out/pile", "./pile", "out/pile.v2", "../x/pile"] {
        super::check_output_prefix(good).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn output_prefixes_in_the_way_are_refused_before_any_work() {
    // A file where a folder belongs failed as "FILE: File exists (os error 17)", and a directory
    // named like an output only when the finished output was moved into place.
    let dir = std::env::temp_dir().join(format!("pythia-in-the-way-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("out.idx")).unwrap();
    std::fs::write(dir.join("file"), b"").unwrap();
    let err = super::check_output_prefix(dir.join("file/sub/x"))
        .unwrap_err()
        .to_string();
    let file = dir.join("file");
    assert_eq!(
        err,
        format!(
            "cannot write {}: {} is a file, not a folder",
            file.join("sub/x.bin").display(),
            file.display()
        )
    );
    let err = IndexedDatasetBuilder::create(dir.join("out"), DType::U16)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "cannot write {}: a directory of that name is in the way",
            dir.join("out.idx").display()
        )),
        "{err}"
    );
    assert!(!dir.join("out.bin").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
