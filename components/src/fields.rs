//! Fields extracted from a line by parsing stages (json, logfmt, regex, ...) and read by later
//! ones (timestamp, labels, filters, output templates), the Promtail model: the line itself stays
//! as it is unless a stage rewrites it, and fields are never sent anywhere by themselves.
//!
//! Guarantees:
//! - An event no parser touched carries no allocation for fields: an empty [`Fields`] is one
//!   null pointer, and cloning it costs nothing. An event with up to four fields costs one
//!   allocation (they are kept inline in it), not one for the list and one for its entries.
//! - Names are unique: setting a name that is there replaces its value.
//! - Values are bytes (`Bytes`), so a parser can hand out slices of the line without copying.

use std::sync::Arc;

use bytes::Bytes;
use smallvec::SmallVec;

/// One field: its name and value.
pub type Field = (Arc<str>, Bytes);

/// Fields kept inline in their one allocation; more spill to a second.
const INLINE_FIELDS: usize = 4;

type FieldList = SmallVec<[Field; INLINE_FIELDS]>;

/// The fields of one event.
// Boxed so that an event without fields pays one pointer, not the whole inline list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fields(Option<Box<FieldList>>);

impl Fields {
    /// No fields.
    pub const fn new() -> Self {
        Self(None)
    }

    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|fields| fields.is_empty())
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |fields| fields.len())
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.0
            .as_ref()?
            .iter()
            .find(|(n, _)| n.as_ref() == name)
            .map(|(_, v)| v)
    }

    /// Sets `name` to `value`, replacing an earlier value.
    pub fn insert(&mut self, name: impl Into<Arc<str>>, value: Bytes) {
        let name = name.into();
        let fields = self.0.get_or_insert_with(|| Box::new(FieldList::new()));
        // Names usually come from one stage's own `Arc`: the pointer check spares a compare.
        match fields
            .iter_mut()
            .find(|(n, _)| Arc::ptr_eq(n, &name) || *n == name)
        {
            Some((_, old)) => *old = value,
            None => fields.push((name, value)),
        }
    }

    /// Sets every `(name, value)` of `fields`, whose names are unique among themselves: onto
    /// an empty set they are moved in at once, without comparing a name.
    pub fn insert_all(&mut self, fields: impl ExactSizeIterator<Item = Field>) {
        if self.is_empty() {
            let all: FieldList = fields.collect();
            self.0 = (!all.is_empty()).then(|| Box::new(all));
            return;
        }
        for (name, value) in fields {
            self.insert(name, value);
        }
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<Bytes> {
        let fields = self.0.as_mut()?;
        let index = fields.iter().position(|(n, _)| n.as_ref() == name)?;
        Some(fields.remove(index).1)
    }

    /// Every field, in the order set.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Bytes)> {
        self.0
            .as_deref()
            .into_iter()
            .flatten()
            .map(|(n, v)| (n.as_ref(), v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_fields_take_one_pointer_and_names_are_unique() {
        assert_eq!(std::mem::size_of::<Fields>(), std::mem::size_of::<usize>());
        let mut fields = Fields::new();
        assert!(fields.is_empty());
        fields.insert("level", Bytes::from_static(b"info"));
        fields.insert("level", Bytes::from_static(b"warn"));
        fields.insert("user", Bytes::from_static(b"ann"));
        assert_eq!(fields.len(), 2);
        assert_eq!(fields.get("level"), Some(&Bytes::from_static(b"warn")));
        assert_eq!(fields.remove("level"), Some(Bytes::from_static(b"warn")));
        assert_eq!(fields.iter().map(|(n, _)| n).collect::<Vec<_>>(), ["user"]);
    }

    #[test]
    fn more_fields_than_fit_inline_are_all_kept_in_order() {
        let names = ["a", "b", "c", "d", "e", "f"];
        let mut fields = Fields::new();
        fields.insert_all(
            names[..5]
                .iter()
                .map(|n| (Arc::from(*n), Bytes::from_static(n.as_bytes()))),
        );
        fields.insert("f", Bytes::from_static(b"f"));
        fields.insert("a", Bytes::from_static(b"A"));
        let all: Vec<(&str, &[u8])> = fields.iter().map(|(n, v)| (n, v.as_ref())).collect();
        let mut want: Vec<(&str, &[u8])> = names.iter().map(|n| (*n, n.as_bytes())).collect();
        want[0].1 = b"A";
        assert_eq!(all, want);
    }

    #[test]
    fn insert_all_moves_onto_an_empty_set_and_replaces_on_a_full_one() {
        let value = |v: &'static str| Bytes::from_static(v.as_bytes());
        let mut fields = Fields::new();
        fields.insert_all(std::iter::empty());
        assert!(fields.is_empty());
        fields.insert_all([("a".into(), value("1")), ("b".into(), value("2"))].into_iter());
        fields.insert_all([("b".into(), value("3")), ("c".into(), value("4"))].into_iter());
        let all: Vec<(&str, &Bytes)> = fields.iter().collect();
        assert_eq!(
            all,
            [("a", &value("1")), ("b", &value("3")), ("c", &value("4"))]
        );
    }
}
