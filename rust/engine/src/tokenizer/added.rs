//! Added tokens (`<|endoftext|>`, the NeoX space runs...) are cut out of the text before the
//! pre-tokenizer sees it, leftmost-longest, as the reference's `AddedVocabulary` does.

use aho_corasick::{AhoCorasick, MatchKind};

use crate::{Error, Result};

pub enum Segment<'a> {
    Text(&'a str),
    Token(u32),
}

enum Matcher {
    Nothing,
    /// Every token is a run of U+0020 (GPT-NeoX's 2..24 spaces): a run of spaces is cut greedily
    /// into the longest tokens that fit, which is what leftmost-longest matching gives, without
    /// running an automaton over every space of the text.
    Spaces {
        /// Indexed by run length; `u32::MAX` where no token has that length.
        ids_by_len: Vec<u32>,
        min: usize,
    },
    Patterns {
        automaton: AhoCorasick,
        ids: Vec<u32>,
    },
}

pub struct AddedMatcher(Matcher);

impl AddedMatcher {
    pub fn new(tokens: &[(String, u32)]) -> Result<Self> {
        let tokens: Vec<&(String, u32)> = tokens.iter().filter(|(s, _)| !s.is_empty()).collect();
        if tokens.is_empty() {
            return Ok(AddedMatcher(Matcher::Nothing));
        }
        if tokens.iter().all(|(s, _)| s.bytes().all(|b| b == b' ')) {
            let max = tokens.iter().map(|(s, _)| s.len()).max().unwrap();
            let min = tokens.iter().map(|(s, _)| s.len()).min().unwrap();
            let mut ids_by_len = vec![u32::MAX; max + 1];
            for (s, id) in tokens.iter().rev() {
                ids_by_len[s.len()] = *id; // the first listed wins, as in the reference's trie
            }
            return Ok(AddedMatcher(Matcher::Spaces { ids_by_len, min }));
        }
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(tokens.iter().map(|(s, _)| s.as_str()))
            .map_err(|e| Error::invalid(format!("cannot build the added-token matcher: {e}")))?;
        Ok(AddedMatcher(Matcher::Patterns {
            automaton,
            ids: tokens.iter().map(|(_, id)| *id).collect(),
        }))
    }

    /// Call `emit` with the text between added tokens and with each added token, in order.
    /// Empty text segments are not emitted.
    #[inline]
    pub fn split<'a>(&self, text: &'a str, mut emit: impl FnMut(Segment<'a>)) {
        match &self.0 {
            Matcher::Nothing => {
                if !text.is_empty() {
                    emit(Segment::Text(text))
                }
            }
            Matcher::Spaces { ids_by_len, min } => split_spaces(text, ids_by_len, *min, emit),
            Matcher::Patterns { automaton, ids } => {
                let mut last = 0;
                for m in automaton.find_iter(text) {
                    if m.start() > last {
                        emit(Segment::Text(&text[last..m.start()]));
                    }
                    emit(Segment::Token(ids[m.pattern().as_usize()]));
                    last = m.end();
                }
                if last < text.len() {
                    emit(Segment::Text(&text[last..]));
                }
            }
        }
    }
}

fn split_spaces<'a>(
    text: &'a str,
    ids_by_len: &[u32],
    min: usize,
    mut emit: impl FnMut(Segment<'a>),
) {
    let bytes = text.as_bytes();
    let max = ids_by_len.len() - 1;
    let needle = vec![b' '; min];
    let finder = memchr::memmem::Finder::new(&needle);
    let mut last = 0; // start of the text not yet emitted
    let mut pos = 0;
    while let Some(found) = finder.find(&bytes[pos..]) {
        let start = pos + found;
        let mut end = start + min;
        while end < bytes.len() && bytes[end] == b' ' {
            end += 1;
        }
        // Cut [start, end) into the longest tokens that fit, left to right.
        let mut at = start;
        while end - at >= min {
            let mut len = (end - at).min(max);
            while ids_by_len[len] == u32::MAX {
                len -= 1;
            }
            if len < min {
                break;
            }
            if at > last {
                emit(Segment::Text(&text[last..at]));
            }
            emit(Segment::Token(ids_by_len[len]));
            at += len;
            last = at;
        }
        pos = end;
    }
    if last < text.len() {
        emit(Segment::Text(&text[last..]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(m: &AddedMatcher, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        m.split(text, |s| {
            out.push(match s {
                Segment::Text(t) => format!("T{t:?}"),
                Segment::Token(id) => format!("#{id}"),
            })
        });
        out
    }

    #[test]
    fn neox_space_runs() {
        let tokens: Vec<(String, u32)> = (2..=24)
            .map(|n| (" ".repeat(n), 50278 - n as u32))
            .collect();
        let m = AddedMatcher::new(&tokens).unwrap();
        assert_eq!(run(&m, "a b"), ["T\"a b\""]);
        assert_eq!(run(&m, "a  b"), ["T\"a\"", "#50276", "T\"b\""]);
        let s = format!("a{}b", " ".repeat(25));
        assert_eq!(run(&m, &s), ["T\"a\"", "#50254", "T\" b\""]);
        let s = " ".repeat(50);
        assert_eq!(run(&m, &s), ["#50254", "#50254", "#50276"]);
        // The generic automaton agrees with the fast path.
        let mut tokens2 = tokens.clone();
        tokens2.push(("<|x|>".into(), 7));
        let g = AddedMatcher::new(&tokens2).unwrap();
        for text in ["a  b", "   ", " x   <|x|>  y ", &" ".repeat(73)] {
            let fast: Vec<String> = run(&m, text);
            let slow: Vec<String> = run(&g, text).into_iter().filter(|s| s != "#7").collect();
            if !text.contains("<|x|>") {
                assert_eq!(fast, slow, "{text:?}");
            }
        }
        assert_eq!(run(&g, "a<|x|>b"), ["T\"a\"", "#7", "T\"b\""]);
    }
}
