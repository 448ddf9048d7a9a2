//! How a resumed run recognises its inputs besides path, size and modification time, which a
//! same-size edit copied with `cp -p` or `rsync -t` (or made on a file system with coarse
//! times) keeps: a digest of sampled blocks. Reading the whole input again would make every
//! resume of a Pile run re-read hundreds of GB; sixteen 64 kB blocks, the first and the last
//! among them, cost one read each and catch any change of length, of the start or of the end,
//! and most edits in between. A file of up to 1 MB is hashed whole.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::{Error, Result};

const BLOCK: u64 = 64 << 10;
const BLOCKS: u64 = 16;

/// The first 16 bytes (hex) of the SHA-256 of the sampled blocks of `path`.
pub fn sampled_digest(path: &Path) -> Result<String> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut hash = Sha256::new();
    if len <= BLOCK * BLOCKS {
        let mut all = Vec::with_capacity(len as usize);
        (&file)
            .read_to_end(&mut all)
            .map_err(|e| Error::io(path, e))?;
        hash.update(&all);
    } else {
        let mut block = vec![0u8; BLOCK as usize];
        for k in 0..BLOCKS {
            let at = k * (len - BLOCK) / (BLOCKS - 1);
            file.read_exact_at(&mut block, at)
                .map_err(|e| Error::io(path, e))?;
            hash.update(&block);
        }
    }
    Ok(hash.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(bytes: &[u8]) -> String {
        let name = format!("input-digest-{}-{}", std::process::id(), bytes.len());
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, bytes).unwrap();
        let digest = sampled_digest(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        digest
    }

    #[test]
    fn same_size_edits_at_the_start_the_end_or_a_sampled_block_change_it() {
        let text: Vec<u8> = (0..3_000_000u32).map(|i| b'a' + (i % 23) as u8).collect();
        let base = digest_of(&text);
        assert_eq!(base.len(), 32);
        assert_eq!(digest_of(&text), base);
        let len = text.len() as u64;
        let middle = (7 * (len - BLOCK) / (BLOCKS - 1) + 100) as usize;
        for at in [0, text.len() - 1, middle] {
            let mut edited = text.clone();
            edited[at] = b'Z';
            assert_ne!(digest_of(&edited), base, "an edit at {at} went unnoticed");
        }
        // Small files are hashed whole: any edit shows.
        let small = &text[..100_000];
        let mut edited = small.to_vec();
        edited[54_321] = b'Z';
        assert_ne!(digest_of(small), digest_of(&edited));
    }
}
