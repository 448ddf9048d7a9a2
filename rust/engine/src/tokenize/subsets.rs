//! Joining the per-document subset arrays of datasets that are merged in order (the parts of a
//! `--num-shards` run): names are re-coded by first appearance, which is exactly the table a
//! single run over all inputs builds, so the merged files are byte-identical to it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::output::{npy_u16_bytes, subsets_json_path, subsets_npy_path, write_atomically};
use crate::error::IoContext;
use crate::{Error, Result};

/// Read `PREFIX.subsets.json` (key, names) and the codes of `PREFIX.subsets.npy`.
/// The codes may be any 1-D integer array, as `info`, `verify` and `GPTDataset` read them
/// (numpy's `.astype(np.uint8)` of a table of few names is one): tokenize writes uint16, but
/// refusing others here made `merge` reject labels every reader accepts. They are held as
/// uint16, as tokenize and merge write them: as u32 they took twice the memory (800 MB for the
/// Pile's 210 M documents, beside the file's own bytes), and a code past 65,535 could not be
/// written to a merged `.subsets.npy` anyway.
pub fn read_subsets(prefix: &Path) -> Result<(String, Vec<String>, Vec<u16>)> {
    let json_path = subsets_json_path(prefix);
    let table: Value = serde_json::from_slice(&std::fs::read(&json_path).at(&json_path)?)
        .map_err(|e| Error::corrupt(&json_path, format!("not valid JSON: {e}")))?;
    let key = table["key"].as_str().unwrap_or_default().to_string();
    let names: Vec<String> = table["names"]
        .as_array()
        .ok_or_else(|| Error::corrupt(&json_path, "no \"names\" list"))?
        .iter()
        .map(|n| n.as_str().map(str::to_string))
        .collect::<Option<_>>()
        .ok_or_else(|| Error::corrupt(&json_path, "\"names\" must be strings"))?;
    let npy_path = subsets_npy_path(prefix);
    let bytes = std::fs::read(&npy_path).at(&npy_path)?;
    let bad = |m: &str| Error::corrupt(&npy_path, m.to_string());
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file"));
    }
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(
        bytes
            .get(10..10 + header_len)
            .ok_or_else(|| bad("truncated header"))?,
    )
    .map_err(|_| bad("bad header"))?;
    // numpy writes a 1-D shape as `(N,)`.
    let shape = header
        .split("'shape': (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_default();
    let one_d = shape
        .trim()
        .strip_suffix(',')
        .is_some_and(|n| n.trim().parse::<usize>().is_ok());
    let descr = header
        .split("'descr': '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap_or_default();
    // (byte order, width in bytes, signed)
    let (big, width, signed) = match descr.as_bytes() {
        [o @ (b'<' | b'>' | b'|' | b'='), k @ (b'u' | b'i'), w] => (
            *o == b'>',
            (*w as char).to_digit(10).unwrap_or(0) as usize,
            *k == b'i',
        ),
        _ => (false, 0, false),
    };
    if ![1, 2, 4, 8].contains(&width) || header.contains("'fortran_order': True") || !one_d {
        return Err(bad("expected a 1-D array of integers"));
    }
    let data = &bytes[10 + header_len..];
    if data.len() % width != 0 {
        return Err(bad("data bytes are not a whole number of codes"));
    }
    let mut codes = Vec::with_capacity(data.len() / width);
    for c in data.chunks_exact(width) {
        let mut b = [0u8; 8];
        b[..width].copy_from_slice(c);
        if big {
            b[..width].reverse();
        }
        // A negative code is refused (as the readers do) rather than read as a huge one.
        if signed && b[width - 1] & 0x80 != 0 {
            return Err(bad("negative subset codes: damaged, or not a subsets file"));
        }
        let code = u64::from_le_bytes(b);
        match u16::try_from(code) {
            Ok(c) => codes.push(c),
            Err(_) if code >= names.len() as u64 => {
                return Err(bad(&format!(
                    "code {code} has no name in {}",
                    json_path.display()
                )))
            }
            Err(_) => {
                return Err(bad(&format!(
                    "code {code} is past 65,535, the most the uint16 codes of a .subsets.npy \
                     hold"
                )))
            }
        }
    }
    if let Some(&c) = codes.iter().find(|&&c| c as usize >= names.len()) {
        return Err(bad(&format!(
            "code {c} has no name in {}",
            json_path.display()
        )));
    }
    Ok((key, names, codes))
}

pub fn merge_subsets(output: &Path, inputs: &[PathBuf]) -> Result<()> {
    let (npy, json) = join_subsets(inputs)?;
    write_atomically(&subsets_npy_path(output), &npy)?;
    write_atomically(&subsets_json_path(output), &json)
}

/// The bytes of the merged `.subsets.npy` and `.subsets.json`, every input checked (readable,
/// one code per item, one key), so a caller can refuse bad inputs before writing anything.
pub fn join_subsets(inputs: &[PathBuf]) -> Result<(Vec<u8>, Vec<u8>)> {
    if inputs.is_empty() {
        return Err(Error::invalid("merge needs at least one input dataset"));
    }
    let mut key: Option<String> = None;
    let mut names: Vec<String> = Vec::new();
    let mut index: HashMap<String, u16> = HashMap::new();
    let mut out = Vec::new();
    for prefix in inputs {
        let (k, part_names, codes) = read_subsets(prefix)?;
        // One code per item: codes of other data would shift every later document's label.
        let items = crate::indexed::IndexFile::open(crate::indexed::idx_path(prefix))?.len();
        if codes.len() != items {
            return Err(Error::corrupt(
                subsets_npy_path(prefix),
                format!(
                    "holds {} subset codes but the dataset has {items} items: it belongs to \
                     other data or is damaged",
                    codes.len()
                ),
            ));
        }
        match &key {
            None => key = Some(k),
            Some(first) if *first != k => {
                return Err(Error::invalid(format!(
                    "{}: subsets of key {k:?}, but the first input has {first:?}",
                    prefix.display()
                )))
            }
            _ => {}
        }
        let mut remap = Vec::with_capacity(part_names.len());
        // Re-code in order of first appearance within this part, as a single run would.
        let mut seen = vec![false; part_names.len()];
        let mut order = Vec::new();
        for &c in &codes {
            if !seen[c as usize] {
                seen[c as usize] = true;
                order.push(c);
            }
        }
        let mut new_code = vec![0u16; part_names.len()];
        for c in order {
            let name = &part_names[c as usize];
            let code = match index.get(name) {
                Some(&code) => code,
                None => {
                    let code = u16::try_from(names.len()).map_err(|_| {
                        Error::invalid(format!(
                            "{}: its subset names bring the merged inputs past 65,536 distinct \
                             names, more than the uint16 codes of .subsets.npy hold; tokenize \
                             with --meta-key '' to keep no subsets",
                            prefix.display()
                        ))
                    })?;
                    names.push(name.clone());
                    index.insert(name.clone(), code);
                    code
                }
            };
            new_code[c as usize] = code;
        }
        remap.extend(new_code);
        for c in codes {
            out.extend_from_slice(&remap[c as usize].to_le_bytes());
        }
    }
    let mut text = serde_json::to_vec_pretty(&json!({"key": key, "names": names})).unwrap();
    text.push(b'\n');
    Ok((npy_u16_bytes(&out), text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indexed::{DType, IndexedDatasetBuilder};

    /// A dataset of `names.len()` empty documents, document i labelled `names[i]`.
    fn labelled(prefix: &Path, names: &[String]) {
        let mut b = IndexedDatasetBuilder::create(prefix, DType::U16).unwrap();
        for _ in names {
            b.add_document_u32(&[]).unwrap();
        }
        b.finish().unwrap();
        let codes: Vec<u8> = (0..names.len() as u16).flat_map(u16::to_le_bytes).collect();
        std::fs::write(subsets_npy_path(prefix), npy_u16_bytes(&codes)).unwrap();
        let table = json!({"key": "meta.pile_set_name", "names": names});
        std::fs::write(subsets_json_path(prefix), table.to_string()).unwrap();
    }

    #[test]
    fn codes_of_other_dtypes_are_held_as_u16() {
        let dir = std::env::temp_dir().join(format!("pythia-subsets-i8-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let prefix = dir.join("a");
        labelled(&prefix, &["x".to_string(), "y".to_string()]);
        let npy = |descr: &str, data: &[u8]| {
            let mut header = format!(
                "{{'descr': '{descr}', 'fortran_order': False, 'shape': ({},), }}",
                2
            );
            while (10 + header.len() + 1) % 64 != 0 {
                header.push(' ');
            }
            header.push('\n');
            let mut out = b"\x93NUMPY\x01\x00".to_vec();
            out.extend_from_slice(&(header.len() as u16).to_le_bytes());
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(data);
            std::fs::write(subsets_npy_path(&prefix), out).unwrap();
        };
        npy("<i8", &[[1, 0, 0, 0, 0, 0, 0, 0], [0; 8]].concat());
        // Held as u16, the width tokenize writes: as u32 they took twice the memory.
        let codes: Vec<u16> = read_subsets(&prefix).unwrap().2;
        assert_eq!(codes, [1, 0]);
        npy("|u1", &[0, 1]);
        assert_eq!(read_subsets(&prefix).unwrap().2, [0, 1]);
        // Past u16 and past the names: no name, as for any other code.
        npy("<u4", &[[0, 0, 1, 0], [0; 4]].concat());
        let err = read_subsets(&prefix).unwrap_err().to_string();
        assert!(err.contains("code 65536 has no name"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn too_many_names_across_inputs_names_the_input() {
        let dir = std::env::temp_dir().join(format!("pythia-subsets-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Each input fits uint16 codes; together they hold 80,000 distinct names.
        let (a, b) = (dir.join("a"), dir.join("b"));
        labelled(
            &a,
            &(0..40_000).map(|i| format!("a{i}")).collect::<Vec<_>>(),
        );
        labelled(
            &b,
            &(0..40_000).map(|i| format!("b{i}")).collect::<Vec<_>>(),
        );
        let err = join_subsets(&[a.clone(), b.clone()])
            .unwrap_err()
            .to_string();
        assert!(err.contains(&b.display().to_string()), "{err}");
        assert!(err.contains("--meta-key ''"), "{err}");
        assert!(join_subsets(&[a.clone(), a]).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
