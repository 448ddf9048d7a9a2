//! Rows of Arrow string columns (Parquet files and saved datasets, read by pyarrow in Python)
//! tokenized in parallel and appended to a [`TokenizedOutput`] in order: the batch form of what
//! the JSON-lines pipeline does for a chunk of lines.

use rayon::prelude::*;

use super::{document_bytes, TokenizedOutput};
use crate::corpus::{Row, StringColumn};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// Tokenize the rows of `columns`, taken as one column (the first's rows, then the second's...),
/// and append them to `out`, all but the `skip` rows (ascending), which the caller has counted
/// as bad; a row not skipped must be text. `metas[i]` is row i's subset name. Empty texts are
/// counted and skipped, as GPT-NeoX skips them. Returns the bytes of text appended.
pub fn add_string_columns(
    out: &mut TokenizedOutput,
    tok: &Tokenizer,
    eod: u32,
    columns: &[StringColumn<'_>],
    skip: &[usize],
    metas: Option<&[Option<String>]>,
) -> Result<u64> {
    let len: usize = columns.iter().map(StringColumn::len).sum();
    if metas.is_some_and(|m| m.len() != len) {
        return Err(Error::invalid(
            "the columns and their subset names differ in length",
        ));
    }
    if skip.windows(2).any(|w| w[0] >= w[1]) || skip.last().is_some_and(|&s| s >= len) {
        return Err(Error::invalid(format!(
            "rows to skip must be rows of the columns ({len} in all), in ascending order"
        )));
    }
    let mut skip = skip.iter().copied().peekable();
    let mut rows = Vec::with_capacity(len);
    for (i, row) in columns.iter().flat_map(|c| c.rows()).enumerate() {
        if skip.next_if_eq(&i).is_some() {
            continue;
        }
        match row {
            Row::Text(text) => rows.push((i, text)),
            row => {
                return Err(Error::invalid(format!(
                    "row {i} of the columns is not text ({}) and is not skipped",
                    row.problem().unwrap_or_else(|| "null".to_string())
                )))
            }
        }
    }
    let dtype = out.dtype();
    let items: Vec<Option<Vec<u8>>> = crate::in_pool(|| {
        rows.par_iter()
            .map_init(Vec::new, |ids, (_, text)| {
                if text.is_empty() {
                    return None;
                }
                let mut bytes = Vec::with_capacity(text.len() / 2);
                document_bytes(tok, text, dtype, eod, ids, &mut bytes);
                Some(bytes)
            })
            .collect()
    })?;
    for (&(i, _), item) in rows.iter().zip(&items) {
        match item {
            Some(bytes) => out.add_document(bytes, metas.and_then(|m| m[i].as_deref()))?,
            None => out.counts.empty_skipped += 1,
        }
    }
    Ok(rows.iter().map(|(_, text)| text.len() as u64).sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::offset_bytes;
    use crate::indexed::{DType, IndexedDataset};

    #[test]
    fn rows_of_several_columns_in_order_with_skipped_and_empty_ones() {
        let dir = std::env::temp_dir().join(format!("pythia-strcol-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tok = Tokenizer::from_file(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../python/pythia_data/data/20B_tokenizer.json"
        ))
        .unwrap();
        // Column one: "Hello world", a null, "". Column two (from slot 1): "bad\xff", " again".
        let (data1, offs1, bits1) = (b"Hello world", offset_bytes(&[0, 11, 11, 11]), [0b101u8]);
        let (data2, offs2) = (b"xbad\xff again", offset_bytes(&[0, 1, 5, 11]));
        let columns = [
            StringColumn::new(&offs1, data1, Some(&bits1), 0, 3).unwrap(),
            StringColumn::new(&offs2, data2, None, 1, 2).unwrap(),
        ];
        let metas: Vec<Option<String>> = ["A", "B", "C", "D", "E"]
            .iter()
            .map(|m| Some(m.to_string()))
            .collect();
        let prefix = dir.join("out");
        let mut out = TokenizedOutput::open(&prefix, DType::U16, "test", Some("m")).unwrap();
        let eod = tok.eod_id().unwrap();
        // A null or bad row must be skipped by the caller.
        let refused = add_string_columns(&mut out, &tok, eod, &columns, &[1], Some(&metas));
        assert!(refused
            .unwrap_err()
            .to_string()
            .contains("row 3 of the columns is not text"));
        let added = add_string_columns(&mut out, &tok, eod, &columns, &[1, 3], Some(&metas));
        assert_eq!(added.unwrap(), 11 + 6);
        assert_eq!(out.counts.empty_skipped, 1);
        out.finish().unwrap();
        let ds = IndexedDataset::open(&prefix).unwrap();
        let expected: Vec<Vec<u32>> = ["Hello world", " again"]
            .iter()
            .map(|t| tok.encode(t).into_iter().chain([eod]).collect())
            .collect();
        assert_eq!(ds.len(), 2);
        for (i, ids) in expected.iter().enumerate() {
            let got: Vec<u32> = ds
                .get_i64(i, 0, None)
                .unwrap()
                .iter()
                .map(|&t| t as u32)
                .collect();
            assert_eq!(&got, ids);
        }
        let (_, names, codes) = crate::tokenize::read_subsets(&prefix).unwrap();
        assert_eq!(
            (names, codes),
            (vec!["A".to_string(), "E".to_string()], vec![0, 1])
        );
        // Out of order or out of range skips are the caller's error.
        let mut out = TokenizedOutput::open(&dir.join("o2"), DType::U16, "t", None).unwrap();
        assert!(add_string_columns(&mut out, &tok, eod, &columns, &[3, 1], None).is_err());
        assert!(add_string_columns(&mut out, &tok, eod, &columns, &[1, 3, 5], None).is_err());
        out.discard();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
