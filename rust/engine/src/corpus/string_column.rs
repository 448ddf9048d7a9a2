//! A column of strings in Arrow's `large_string` layout (a validity bitmap, one 64-bit offset
//! per row boundary, one buffer of bytes), read in place: Parquet files and saved datasets reach
//! the tokenizer straight from pyarrow's buffers, with no Python string per row. The buffers
//! come from other programs' files, and pyarrow does not check an Arrow file's offsets when it
//! maps one, so every row is bounds-checked and its bytes checked to be UTF-8 (Arrow never
//! checks that when reading).

use crate::{Error, Result};

/// What one row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row<'a> {
    Null,
    Text(&'a str),
    /// Not UTF-8: the first bad byte and its offset within the row.
    NotUtf8 {
        byte: u8,
        at: usize,
    },
    /// Offsets that do not delimit a piece of the data buffer: a damaged file.
    OutOfBounds,
}

impl Row<'_> {
    /// Why the row holds no text, for the run's report; None for text and null.
    pub fn problem(&self) -> Option<String> {
        match self {
            Row::Null | Row::Text(_) => None,
            Row::NotUtf8 { byte, at } => {
                Some(format!("invalid UTF-8 (byte 0x{byte:02x} at offset {at})"))
            }
            Row::OutOfBounds => {
                Some("offsets outside the column's data (a damaged Arrow file)".to_string())
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct StringColumn<'a> {
    /// Native-endian i64s as bytes, so that an Arrow buffer at any alignment can be read.
    offsets: &'a [u8],
    data: &'a [u8],
    validity: Option<&'a [u8]>,
    /// Arrow's array offset: row i is slot `first + i` of the offsets and the bitmap.
    first: usize,
    len: usize,
}

impl<'a> StringColumn<'a> {
    /// The `len` rows from slot `first` of Arrow buffers: `offsets` as bytes, `validity` absent
    /// when no row is null. Refused when the buffers are too short to hold that many rows.
    pub fn new(
        offsets: &'a [u8],
        data: &'a [u8],
        validity: Option<&'a [u8]>,
        first: usize,
        len: usize,
    ) -> Result<Self> {
        let slots = first
            .checked_add(len)
            .ok_or_else(|| Error::invalid("too many rows"))?;
        if len > 0 && offsets.len() / 8 <= slots {
            return Err(Error::invalid(format!(
                "a string column of {len} rows from slot {first} needs {} offsets, \
                 and its buffer holds {}",
                slots + 1,
                offsets.len() / 8
            )));
        }
        if let Some(bits) = validity {
            if bits.len() < slots.div_ceil(8) {
                return Err(Error::invalid(format!(
                    "a string column of {len} rows from slot {first} needs {} validity bytes, \
                     and its bitmap holds {}",
                    slots.div_ceil(8),
                    bits.len()
                )));
            }
        }
        Ok(StringColumn {
            offsets,
            data,
            validity,
            first,
            len,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn offset(&self, slot: usize) -> i64 {
        let at = slot * 8;
        i64::from_ne_bytes(self.offsets[at..at + 8].try_into().unwrap())
    }

    /// Row `i` (< `len`).
    pub fn row(&self, i: usize) -> Row<'a> {
        assert!(i < self.len, "row {i} of a column of {}", self.len);
        let slot = self.first + i;
        if let Some(bits) = self.validity {
            if bits[slot / 8] & (1 << (slot % 8)) == 0 {
                return Row::Null;
            }
        }
        let (start, end) = (self.offset(slot), self.offset(slot + 1));
        let (Ok(start), Ok(end)) = (usize::try_from(start), usize::try_from(end)) else {
            return Row::OutOfBounds;
        };
        let Some(bytes) = self.data.get(start..end) else {
            return Row::OutOfBounds;
        };
        match std::str::from_utf8(bytes) {
            Ok(text) => Row::Text(text),
            Err(e) => Row::NotUtf8 {
                byte: bytes[e.valid_up_to()],
                at: e.valid_up_to(),
            },
        }
    }

    pub fn rows(&self) -> impl Iterator<Item = Row<'a>> + '_ {
        (0..self.len).map(|i| self.row(i))
    }
}

/// Offsets as the bytes [`StringColumn::new`] reads, for tests that build columns by hand.
#[cfg(test)]
pub(crate) fn offset_bytes(values: &[i64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_with_nulls_bad_utf8_and_a_slice() {
        let data = b"ab\xffcdxyz";
        let offs = offset_bytes(&[0, 2, 3, 3, 5, 8]);
        // Slot 2 null: bits 1, 1, 0, 1, 1.
        let validity = [0b11011u8];
        let col = StringColumn::new(&offs, data, Some(&validity), 0, 5).unwrap();
        let rows: Vec<_> = col.rows().collect();
        assert_eq!(
            rows,
            [
                Row::Text("ab"),
                Row::NotUtf8 { byte: 0xff, at: 0 },
                Row::Null,
                Row::Text("cd"),
                Row::Text("xyz"),
            ]
        );
        assert_eq!(
            rows[1].problem().unwrap(),
            "invalid UTF-8 (byte 0xff at offset 0)"
        );
        // Arrow's slice: rows 3 and 4 of the same buffers.
        let tail = StringColumn::new(&offs, data, Some(&validity), 3, 2).unwrap();
        assert_eq!(
            tail.rows().collect::<Vec<_>>(),
            [Row::Text("cd"), Row::Text("xyz")]
        );
    }

    #[test]
    fn offsets_are_read_at_any_alignment() {
        let mut buf = vec![0u8];
        buf.extend(offset_bytes(&[0, 3]));
        let col = StringColumn::new(&buf[1..], b"abc", None, 0, 1).unwrap();
        assert_eq!(col.row(0), Row::Text("abc"));
    }

    #[test]
    fn damaged_offsets_are_a_row_problem_not_a_panic() {
        let data = b"abcd";
        for bad in [[0, 9], [3, 1], [-4, 2]] {
            let offs = offset_bytes(&bad);
            let col = StringColumn::new(&offs, data, None, 0, 1).unwrap();
            assert_eq!(col.row(0), Row::OutOfBounds, "{bad:?}");
        }
    }

    #[test]
    fn buffers_too_short_for_the_rows_are_refused() {
        let offs = offset_bytes(&[0, 1]);
        assert!(StringColumn::new(&offs, b"a", None, 1, 1).is_err());
        assert!(StringColumn::new(&offs, b"a", Some(&[]), 0, 1).is_err());
        assert!(StringColumn::new(&offs, b"a", None, usize::MAX, 2).is_err());
        // No rows need no offsets at all (Arrow may leave the buffer empty).
        assert!(StringColumn::new(&[], b"", None, 0, 0).unwrap().is_empty());
    }
}
