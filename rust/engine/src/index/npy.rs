//! numpy `.npy` files (format 1.0), as `np.save` writes them and `np.load(mmap_mode="r")` reads
//! them: the index arrays must be byte-for-byte what GPT-NeoX saves, so GPT-NeoX can load ours.
//! Writes go through a temporary file and a rename; the streaming writer lets `sample_idx` go to
//! disk row by row instead of sitting in memory.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

pub(crate) use crate::atomic::shared_temp_path;
use crate::error::IoContext;
use crate::{Error, Result};

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The numpy dtypes the index uses, little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NpyDType {
    I32,
    U32,
    I64,
    U8,
    U16,
}

impl NpyDType {
    pub fn descr(self) -> &'static str {
        match self {
            NpyDType::I32 => "<i4",
            NpyDType::U32 => "<u4",
            NpyDType::I64 => "<i8",
            NpyDType::U8 => "|u1",
            NpyDType::U16 => "<u2",
        }
    }
    pub fn itemsize(self) -> usize {
        match self {
            NpyDType::U8 => 1,
            NpyDType::U16 => 2,
            NpyDType::I32 | NpyDType::U32 => 4,
            NpyDType::I64 => 8,
        }
    }
    fn from_descr(d: &str) -> Option<Self> {
        Some(match d {
            "<i4" => NpyDType::I32,
            "<u4" => NpyDType::U32,
            "<i8" => NpyDType::I64,
            "|u1" | "<u1" => NpyDType::U8,
            "<u2" => NpyDType::U16,
            _ => return None,
        })
    }
}

/// The header `np.save` writes: the dict, padded with spaces and a newline so that the data
/// starts on a 64-byte boundary.
pub fn header(dtype: NpyDType, shape: &[usize]) -> Vec<u8> {
    let shape_str = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
        dtype.descr(),
        shape_str
    );
    let unpadded = MAGIC.len() + 2 + 2 + dict.len() + 1;
    let padded = unpadded.div_ceil(64) * 64;
    let hlen = padded - MAGIC.len() - 4;
    let mut out = Vec::with_capacity(padded);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(hlen as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(padded - 1, b' ');
    out.push(b'\n');
    out
}

/// Plain-old-data values that can be written as raw little-endian bytes.
pub trait Pod: Copy + Send + Sync + 'static {
    const DTYPE: NpyDType;
}
impl Pod for i32 {
    const DTYPE: NpyDType = NpyDType::I32;
}
impl Pod for u32 {
    const DTYPE: NpyDType = NpyDType::U32;
}
impl Pod for i64 {
    const DTYPE: NpyDType = NpyDType::I64;
}
impl Pod for u8 {
    const DTYPE: NpyDType = NpyDType::U8;
}
impl Pod for u16 {
    const DTYPE: NpyDType = NpyDType::U16;
}

pub(crate) fn as_bytes<T: Pod>(v: &[T]) -> &[u8] {
    // SAFETY: Pod types are plain integers without padding; this crate targets little-endian
    // machines (checked at compile time in index/mod.rs).
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

/// Streams an array to `dest` through a temporary file; `finish` checks the element count and
/// renames. Dropped without `finish`, it removes the temporary file.
pub struct NpyWriter {
    dest: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
    expected_bytes: u64,
    written: u64,
}

impl NpyWriter {
    pub fn create(dest: impl AsRef<Path>, dtype: NpyDType, shape: &[usize]) -> Result<Self> {
        let dest = dest.as_ref().to_path_buf();
        // The index arrays of a big dataset are gigabytes: drop those of killed runs.
        crate::atomic::remove_stale_temps(&dest);
        // Separate jobs may build the same index at once: each writes its own temporary, locked
        // until it is renamed, so that none takes another's for a killed run's.
        let tmp = shared_temp_path(&dest);
        // Errors name `dest`, or for the create the folder that refused it: the user never
        // named the hidden temporary, and it is removed on the way out.
        let file = File::create(&tmp).map_err(|e| Error::creating(&dest, &tmp, e))?;
        crate::atomic::hold_temp_lock(&file);
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&header(dtype, shape)).at(&dest)?;
        let expected_bytes = shape.iter().product::<usize>() as u64 * dtype.itemsize() as u64;
        Ok(NpyWriter {
            dest,
            tmp,
            out: Some(out),
            expected_bytes,
            written: 0,
        })
    }

    pub fn write<T: Pod>(&mut self, values: &[T]) -> Result<()> {
        let bytes = as_bytes(values);
        self.written += bytes.len() as u64;
        self.out
            .as_mut()
            .expect("writer used after finish")
            .write_all(bytes)
            .at(&self.dest)
    }

    pub fn finish(mut self) -> Result<PathBuf> {
        if self.written != self.expected_bytes {
            return Err(Error::invalid(format!(
                "internal error: {} got {} bytes of data, its header promises {}",
                self.dest.display(),
                self.written,
                self.expected_bytes
            )));
        }
        let out = self.out.take().unwrap();
        let result = (|| {
            let file = out
                .into_inner()
                .map_err(|e| Error::io(&self.dest, e.into_error()))?;
            file.sync_all().at(&self.dest)?;
            // Closed (and so unlocked) only once renamed: see NpyWriter::create.
            std::fs::rename(&self.tmp, &self.dest).at(&self.dest)
        })();
        if let Err(e) = result {
            // A full disk fails the last flush or sync: no temporary file may stay behind.
            let _ = std::fs::remove_file(&self.tmp);
            return Err(e);
        }
        Ok(self.dest.clone())
    }
}

impl Drop for NpyWriter {
    fn drop(&mut self) {
        if self.out.is_some() {
            self.out = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Write a whole array atomically.
pub fn write_npy<T: Pod>(dest: impl AsRef<Path>, shape: &[usize], values: &[T]) -> Result<PathBuf> {
    let mut w = NpyWriter::create(dest, T::DTYPE, shape)?;
    w.write(values)?;
    w.finish()
}

/// A memory-mapped, validated `.npy` file.
#[derive(Debug, Clone)]
pub struct NpyArray {
    path: PathBuf,
    map: Arc<Mmap>,
    dtype: NpyDType,
    shape: Vec<usize>,
    data_offset: usize,
}

fn parse_header(path: &Path, b: &[u8]) -> Result<(NpyDType, Vec<usize>, usize)> {
    let bad = |m: String| Error::corrupt(path, m);
    if b.len() < 10 || &b[..6] != MAGIC {
        return Err(bad(
            "not a .npy file (bad magic or shorter than the header)".into(),
        ));
    }
    let (hlen, start) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => return Err(bad(format!("unsupported .npy format version {v}"))),
    };
    if b.len() < start + hlen {
        return Err(bad("truncated .npy header".into()));
    }
    let text = std::str::from_utf8(&b[start..start + hlen])
        .map_err(|_| bad("the .npy header is not text".into()))?;
    let field = |key: &str| -> Option<&str> {
        let at = text.find(&format!("'{key}':"))? + key.len() + 3;
        Some(text[at..].trim_start())
    };
    let descr = field("descr")
        .and_then(|s| s.strip_prefix('\''))
        .and_then(|s| s.split('\'').next())
        .ok_or_else(|| bad("the .npy header has no 'descr'".into()))?;
    let dtype = NpyDType::from_descr(descr)
        .ok_or_else(|| bad(format!("unexpected dtype '{descr}' in the .npy header")))?;
    if field("fortran_order").is_some_and(|s| s.starts_with("True")) {
        return Err(bad("Fortran-ordered .npy arrays are not supported".into()));
    }
    let shape_s = field("shape")
        .and_then(|s| s.strip_prefix('('))
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("the .npy header has no 'shape'".into()))?;
    let shape = shape_s
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| bad(format!("bad shape ({shape_s}) in the .npy header")))?;
    Ok((dtype, shape, start + hlen))
}

impl NpyArray {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = crate::files::open_regular(&path)?;
        // SAFETY: read-only map of a file we do not modify.
        let map = unsafe { Mmap::map(&file) }.at(&path)?;
        let (dtype, shape, data_offset) = parse_header(&path, &map)?;
        // A hand-edited shape can overflow: checked, so it cannot wrap round to the data size.
        let need = shape
            .iter()
            .try_fold(dtype.itemsize(), |acc, &d| acc.checked_mul(d));
        let have = map.len() - data_offset;
        if need != Some(have) {
            let need = need.map_or("more than 2^64".to_string(), |n| n.to_string());
            return Err(Error::corrupt(
                &path,
                format!(
                    "holds {have} bytes of data but its header ({} of shape {:?}) needs {need}: \
                     the file is truncated or damaged; delete it to rebuild",
                    dtype.descr(),
                    shape
                ),
            ));
        }
        Ok(NpyArray {
            path,
            map: Arc::new(map),
            dtype,
            shape,
            data_offset,
        })
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn dtype(&self) -> NpyDType {
        self.dtype
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn data(&self) -> &[u8] {
        &self.map[self.data_offset..]
    }
    pub fn map(&self) -> &Arc<Mmap> {
        &self.map
    }
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }
    /// Element `i` of the flattened array, widened to i64 (unaligned-safe).
    #[inline]
    pub fn get_i64(&self, i: usize) -> i64 {
        let d = self.data();
        match self.dtype {
            NpyDType::I32 => i32::from_le_bytes(d[4 * i..4 * i + 4].try_into().unwrap()) as i64,
            NpyDType::U32 => u32::from_le_bytes(d[4 * i..4 * i + 4].try_into().unwrap()) as i64,
            NpyDType::I64 => i64::from_le_bytes(d[8 * i..8 * i + 8].try_into().unwrap()),
            NpyDType::U8 => d[i] as i64,
            NpyDType::U16 => u16::from_le_bytes(d[2 * i..2 * i + 2].try_into().unwrap()) as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unwritable_folder_is_named_with_the_output_not_the_temporary() {
        // The error named the hidden `.NAME.tmp-PID`, which the user never named.
        let dir = std::env::temp_dir().join(format!("npy-unwritable-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("afile");
        std::fs::write(&file, b"").unwrap();
        let dest = file.join("x_doc_idx.npy"); // below a file: refused as a read-only folder is
        let e = write_npy(&dest, &[1], &[1i32]).unwrap_err().to_string();
        let want = format!(
            "{}: Not a directory (writing {})",
            file.display(),
            dest.display()
        );
        assert_eq!(e, want);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn header_matches_numpy_byte_for_byte() {
        let h = header(NpyDType::I32, &[8, 2]);
        assert_eq!(h.len(), 128);
        let text = std::str::from_utf8(&h[10..]).unwrap();
        assert!(text.starts_with("{'descr': '<i4', 'fortran_order': False, 'shape': (8, 2), }"));
        assert!(text.ends_with(" \n"));
        let h1 = header(NpyDType::U32, &[7]);
        assert!(std::str::from_utf8(&h1[10..])
            .unwrap()
            .contains("'shape': (7,), }"));
    }

    #[test]
    fn round_trip_and_truncation() {
        let dir = std::env::temp_dir().join(format!("npy-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.npy");
        write_npy(&p, &[3, 2], &[1i64, 2, 3, 4, 5, -6]).unwrap();
        let a = NpyArray::open(&p).unwrap();
        assert_eq!(a.shape(), &[3, 2]);
        assert_eq!(a.get_i64(5), -6);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
        let e = NpyArray::open(&p).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
