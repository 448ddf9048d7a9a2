use crate::{Error, Result};

/// Token dtypes of the `.idx` header. Codes 6 and 7 are deliberately absent: they are float types
/// whose meaning differs between GPT-NeoX versions and Megatron-LM, so guessing would silently
/// produce garbage tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    U8,
    I8,
    I16,
    I32,
    I64,
    U16,
}

impl DType {
    pub fn from_code(code: u8) -> Result<Self> {
        Ok(match code {
            1 => DType::U8,
            2 => DType::I8,
            3 => DType::I16,
            4 => DType::I32,
            5 => DType::I64,
            8 => DType::U16,
            6 | 7 => {
                return Err(Error::invalid(format!(
                    "dtype code {code} is a float type whose meaning differs between GPT-NeoX \
                     versions and Megatron-LM (float32/float64 vs float64/double); token datasets \
                     never use it, so this file was probably written by another tool or is corrupt"
                )))
            }
            _ => {
                return Err(Error::invalid(format!(
                    "unknown dtype code {code} (valid: 1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, \
                     8 uint16)"
                )))
            }
        })
    }

    pub fn code(self) -> u8 {
        match self {
            DType::U8 => 1,
            DType::I8 => 2,
            DType::I16 => 3,
            DType::I32 => 4,
            DType::I64 => 5,
            DType::U16 => 8,
        }
    }

    pub fn itemsize(self) -> usize {
        match self {
            DType::U8 | DType::I8 => 1,
            DType::I16 | DType::U16 => 2,
            DType::I32 => 4,
            DType::I64 => 8,
        }
    }

    /// numpy's name for the dtype (`np.dtype(name)` gives it, little-endian).
    pub fn numpy_name(self) -> &'static str {
        match self {
            DType::U8 => "uint8",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::U16 => "uint16",
        }
    }

    pub fn from_numpy_name(name: &str) -> Result<Self> {
        Ok(match name {
            "uint8" | "u1" => DType::U8,
            "int8" | "i1" => DType::I8,
            "int16" | "i2" => DType::I16,
            "int32" | "i4" => DType::I32,
            "int64" | "i8" => DType::I64,
            "uint16" | "u2" => DType::U16,
            _ => {
                return Err(Error::invalid(format!(
                    "unsupported token dtype {name:?} (use uint8, int8, int16, int32, int64 or \
                     uint16)"
                )))
            }
        })
    }

    /// GPT-NeoX's choice (`best_fitting_dtype`): uint16 below 65,500 ids, otherwise int32.
    pub fn best_fitting(vocab_size: usize) -> Self {
        if vocab_size < 65_500 {
            DType::U16
        } else {
            DType::I32
        }
    }

    /// Inclusive range of token ids this dtype can store.
    pub fn value_range(self) -> (i64, i64) {
        match self {
            DType::U8 => (0, u8::MAX as i64),
            DType::I8 => (i8::MIN as i64, i8::MAX as i64),
            DType::I16 => (i16::MIN as i64, i16::MAX as i64),
            DType::I32 => (i32::MIN as i64, i32::MAX as i64),
            DType::I64 => (i64::MIN, i64::MAX),
            DType::U16 => (0, u16::MAX as i64),
        }
    }

    /// Decode one little-endian value of this dtype from the start of `b`.
    #[inline]
    pub fn read_i64(self, b: &[u8]) -> i64 {
        match self {
            DType::U8 => b[0] as i64,
            DType::I8 => b[0] as i8 as i64,
            DType::I16 => i16::from_le_bytes([b[0], b[1]]) as i64,
            DType::U16 => u16::from_le_bytes([b[0], b[1]]) as i64,
            DType::I32 => i32::from_le_bytes(b[..4].try_into().unwrap()) as i64,
            DType::I64 => i64::from_le_bytes(b[..8].try_into().unwrap()),
        }
    }

    /// Append `v` as one little-endian value of this dtype. The caller checks the range.
    #[inline]
    pub fn write_le(self, v: i64, out: &mut Vec<u8>) {
        match self {
            DType::U8 | DType::I8 => out.push(v as u8),
            DType::I16 | DType::U16 => out.extend_from_slice(&(v as u16).to_le_bytes()),
            DType::I32 => out.extend_from_slice(&(v as i32).to_le_bytes()),
            DType::I64 => out.extend_from_slice(&v.to_le_bytes()),
        }
    }
}
