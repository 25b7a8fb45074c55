//! Maps a config path (`models.gpt-4o.targets[1].provider`) back to a line and column.
//!
//! Validation works on deserialised values, which have no spans; rather than threading spans
//! through every type, we re-parse the text once into toml's spanned tree and walk it.

use toml::de::{DeTable, DeValue};

/// One step of a config path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// A config path, as a list of steps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigPath(pub Vec<Seg>);

impl ConfigPath {
    /// Appends a key.
    pub fn key(&self, k: &str) -> ConfigPath {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_owned()));
        p
    }

    /// Appends an index.
    pub fn index(&self, i: usize) -> ConfigPath {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
}

impl std::fmt::Display for ConfigPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// 1-based line and column of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, col)
}

/// Line and column of the deepest element of `path` that exists in `text`.
pub fn locate(text: &str, path: &ConfigPath) -> (usize, usize) {
    let Ok(root) = DeTable::parse(text) else {
        return (1, 1);
    };
    let mut offset = 0;
    let mut table: Option<&DeTable<'_>> = Some(root.get_ref());
    let mut value: Option<&DeValue<'_>> = None;
    for seg in &path.0 {
        let next = match (seg, table, value) {
            (Seg::Key(k), Some(t), _) => {
                t.iter()
                    .find(|(key, _)| key.get_ref() == k)
                    .map(|(key, v)| {
                        // Point at the key for tables (the header line), at the value otherwise.
                        let at = if matches!(v.get_ref(), DeValue::Table(_)) {
                            key.span()
                        } else {
                            v.span()
                        };
                        (at.start, v.get_ref())
                    })
            }
            (Seg::Index(i), _, Some(DeValue::Array(a))) => {
                a.get(*i).map(|v| (v.span().start, v.get_ref()))
            }
            _ => None,
        };
        let Some((at, v)) = next else { break };
        offset = at;
        value = Some(v);
        table = match v {
            DeValue::Table(t) => Some(t),
            _ => None,
        };
    }
    line_col(text, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[server]\nlisten = \"x\"\n\n[models.a]\ntargets = [\n  { provider = \"p\" },\n  { provider = \"q\" },\n]\n";

    #[test]
    fn finds_nested_array_element() {
        let p = ConfigPath::default()
            .key("models")
            .key("a")
            .key("targets")
            .index(1)
            .key("provider");
        assert_eq!(locate(TEXT, &p), (7, 16));
        assert_eq!(p.to_string(), "models.a.targets[1].provider");
    }

    #[test]
    fn missing_leaf_falls_back_to_parent() {
        let p = ConfigPath::default().key("server").key("nope");
        assert_eq!(locate(TEXT, &p), (1, 2));
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
