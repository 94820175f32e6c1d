//! Reading `#[event(...)]`, and refusing the `#[serde(...)]` settings that
//! would break the tag-free payload.

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::parse::ParseStream;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, Lit, LitStr, Meta, Path};

/// The longest stored name, in bytes (annals-core's `MAX_NAME_LEN`).
const MAX_NAME_LEN: usize = 255;

/// The keys of `#[event(...)]`.
const EVENT_KEYS: Keys<Key> = Keys {
    attribute: "event",
    keys: &[
        ("name", Key::Name),
        ("version", Key::Version),
        ("upcasters", Key::Upcasters),
        ("crate", Key::Crate),
    ],
    described: "`name` and `version` (on a variant or a struct), `upcasters` and `crate` (on the enum or struct)",
};

/// The keys an attribute of a derive accepts.
pub(crate) struct Keys<K: 'static> {
    /// The attribute: `event` for `#[event(...)]`.
    pub(crate) attribute: &'static str,
    /// Each key as written, and its value.
    pub(crate) keys: &'static [(&'static str, K)],
    /// Every key and where it goes, for the "unknown key" message.
    pub(crate) described: &'static str,
}

impl<K: Copy + PartialEq> Keys<K> {
    /// The key an entry of the attribute names, recorded in `given` with
    /// where it was written: an error for an unknown key (which ends the
    /// attribute), one more in `errors` for a key given twice.
    pub(crate) fn read(
        &self,
        meta: &ParseNestedMeta<'_>,
        given: &mut Vec<(K, Span)>,
        errors: &mut Errors,
    ) -> syn::Result<K> {
        let span = meta.path.span();
        let written = meta.path.get_ident().map(|i| i.unraw().to_string());
        let Some(&(name, key)) = self
            .keys
            .iter()
            .find(|(name, _)| written.as_deref() == Some(*name))
        else {
            let shown = quote::ToTokens::to_token_stream(&meta.path).to_string();
            return Err(meta.error(format!(
                "unknown key `{shown}` in #[{}(...)]; the keys are {}",
                self.attribute, self.described
            )));
        };
        if given.iter().any(|&(k, _)| k == key) {
            errors.push(syn::Error::new(
                span,
                format!("`{name}` is given twice in #[{}(...)]", self.attribute),
            ));
        }
        given.push((key, span));
        Ok(key)
    }

    /// The key as written.
    pub(crate) fn name(&self, key: K) -> &'static str {
        self.keys
            .iter()
            .find(|&&(_, k)| k == key)
            .map_or("", |&(name, _)| name)
    }
}

/// Compile errors collected along the way, so that one build shows them all.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// A key of `#[event(...)]`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    Name,
    Version,
    Upcasters,
    Crate,
}

/// What the `#[event(...)]` attributes on one item say.
#[derive(Default)]
pub(crate) struct EventArgs {
    /// `name = "..."`, already checked against the stored-name rules.
    pub(crate) name: Option<LitStr>,
    /// `version = N`, already checked to be at least 1.
    pub(crate) version: Option<u32>,
    /// `upcasters = path::to::fn`.
    pub(crate) upcasters: Option<Path>,
    /// `crate = path::to::annals`.
    pub(crate) krate: Option<Path>,
    /// Every key given, where it was written.
    keys: Vec<(Key, Span)>,
}

/// Where an `#[event(...)]` attribute sits, which decides the keys it may hold.
#[derive(Clone, Copy)]
pub(crate) enum Place {
    Enum,
    Variant,
    Struct,
}

impl EventArgs {
    /// Reads every `#[event(...)]` among `attrs` and refuses keys that do not
    /// belong at `place`.
    pub(crate) fn read(attrs: &[Attribute], place: Place, errors: &mut Errors) -> Self {
        let mut args = EventArgs::default();
        for attr in attrs.iter().filter(|a| a.path().is_ident("event")) {
            if let Err(e) = attr.parse_nested_meta(|meta| args.read_key(&meta, errors)) {
                errors.push(e);
            }
        }
        for &(key, span) in &args.keys {
            if let Some(message) = misplaced(key, place) {
                errors.push(syn::Error::new(span, message));
            }
        }
        args
    }

    fn read_key(&mut self, meta: &ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<()> {
        let key = EVENT_KEYS.read(meta, &mut self.keys, errors)?;
        let value = meta.value()?;
        match key {
            Key::Name => {
                let name: LitStr = value.parse()?;
                if let Some(problem) = name_problem(&name.value()) {
                    errors.push(syn::Error::new(
                        name.span(),
                        format!("invalid event type name: {problem}"),
                    ));
                }
                self.name = Some(name);
            }
            Key::Version => {
                let expr: Expr = value.parse()?;
                match parse_version(&expr) {
                    Ok(version) => self.version = Some(version),
                    Err(e) => errors.push(e),
                }
            }
            Key::Upcasters => self.upcasters = Some(parse_path(value)?),
            Key::Crate => self.krate = Some(parse_path(value)?),
        }
        Ok(())
    }
}

/// Why `key` does not belong at `place`, if it does not.
fn misplaced(key: Key, place: Place) -> Option<&'static str> {
    match (place, key) {
        (Place::Struct, _)
        | (Place::Enum, Key::Upcasters | Key::Crate)
        | (Place::Variant, Key::Name | Key::Version) => None,
        (Place::Enum, Key::Name) => Some(
            "`name` goes on a variant, not on the enum: each variant has its own stored name",
        ),
        (Place::Enum, Key::Version) => Some(
            "`version` goes on a variant, not on the enum: each variant has its own schema version",
        ),
        (Place::Variant, Key::Upcasters) => Some(
            "`upcasters` goes on the enum, not on a variant: one function returns the upcasters of every variant",
        ),
        (Place::Variant, Key::Crate) => {
            Some("`crate` goes on the enum, not on a variant")
        }
    }
}

/// A path, written bare (`upcasters = migrations::all`) or, as serde
/// writes it, in a string (`crate = "::annals"`).
pub(crate) fn parse_path(value: ParseStream<'_>) -> syn::Result<Path> {
    if value.peek(LitStr) {
        let text: LitStr = value.parse()?;
        return text.parse();
    }
    value.parse()
}

fn parse_version(expr: &Expr) -> syn::Result<u32> {
    const HINT: &str = "`version` must be an integer literal of 1 or more, such as `version = 2`";
    let lit = match expr {
        Expr::Lit(lit) => &lit.lit,
        _ => return Err(syn::Error::new(expr.span(), HINT)),
    };
    match lit {
        Lit::Int(int) => match int.base10_parse::<u32>() {
            Ok(0) => Err(syn::Error::new(
                int.span(),
                "schema versions start at 1: `version = 0` is not allowed",
            )),
            Ok(version) => Ok(version),
            Err(_) => Err(syn::Error::new(
                int.span(),
                "`version` must fit in a u32 (at most 4294967295)",
            )),
        },
        Lit::Str(s) => Err(syn::Error::new(s.span(), format!("{HINT}, not a string"))),
        other => Err(syn::Error::new(other.span(), HINT)),
    }
}

/// The stored-name rules of annals-core (`check_name` in `id.rs`): what is
/// wrong with `name`, if anything.
pub(crate) fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("it is empty".to_owned())
    } else if name.len() > MAX_NAME_LEN {
        Some(format!(
            "it is {} bytes long, more than the maximum of {MAX_NAME_LEN}",
            name.len()
        ))
    } else if let Some((at, _)) = name.char_indices().find(|(_, c)| c.is_control()) {
        Some(format!("it holds a control character at byte {at}"))
    } else if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
        Some("it starts or ends with whitespace".to_owned())
    } else {
        None
    }
}

/// Refuses `#[event]` where it means nothing (on a field).
pub(crate) fn refuse_event_attrs(attrs: &[Attribute], errors: &mut Errors) {
    for attr in attrs.iter().filter(|a| a.path().is_ident("event")) {
        errors.push(syn::Error::new_spanned(
            attr,
            "#[event(...)] does nothing on a field; put it on the type or on a variant",
        ));
    }
}

/// Refuses the serde settings on an enum that replace its default,
/// externally tagged representation.
pub(crate) fn refuse_serde_on_enum(attrs: &[Attribute], errors: &mut Errors) {
    for (key, span) in serde_keys(attrs) {
        let shown = match key.as_str() {
            "tag" => "#[serde(tag = ...)]",
            "content" => "#[serde(content = ...)]",
            "untagged" => "#[serde(untagged)]",
            _ => continue,
        };
        errors.push(syn::Error::new(
            span,
            format!(
                "#[derive(DomainEvent)] cannot be used with `{shown}`: the event type is stored \
                 beside the payload, and the tag-free payload is built from serde's default \
                 (externally tagged) representation of the enum; remove `{key}`"
            ),
        ));
    }
}

/// Refuses the serde settings on a variant that break the mapping from
/// stored name to serde's variant index.
pub(crate) fn refuse_serde_on_variant(attrs: &[Attribute], errors: &mut Errors) {
    for (key, span) in serde_keys(attrs) {
        let message = match key.as_str() {
            "skip" | "skip_serializing" | "skip_deserializing" => format!(
                "#[derive(DomainEvent)] cannot be used with `#[serde({key})]` on a variant: \
                 skipping a variant shifts serde's variant indexes, which the derive uses to \
                 decode each stored name; remove the variant or the `{key}`"
            ),
            "other" => "#[derive(DomainEvent)] cannot be used with `#[serde(other)]`: decoding \
                 picks the variant by the index that belongs to its stored name, so a catch-all \
                 variant would never be chosen (unknown names fail with \
                 `DecodeError::UnknownEventType`); remove `other`"
                .to_owned(),
            "untagged" => "#[derive(DomainEvent)] cannot be used with `#[serde(untagged)]` on a \
                 variant: the tag-free payload is built from serde's default (externally tagged) \
                 representation of every variant; remove `untagged`"
                .to_owned(),
            _ => continue,
        };
        errors.push(syn::Error::new(span, message));
    }
}

/// The keys of every `#[serde(...)]` among `attrs`, with where they were
/// written. Only the leading identifier of each comma-separated entry is
/// read, so any serde syntax, present or future, passes through.
fn serde_keys(attrs: &[Attribute]) -> Vec<(String, Span)> {
    let mut keys = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        if let Meta::List(list) = &attr.meta {
            collect_keys(list.tokens.clone(), &mut keys);
        }
    }
    keys
}

fn collect_keys(tokens: TokenStream, keys: &mut Vec<(String, Span)>) {
    let mut at_start = true;
    for token in tokens {
        match &token {
            TokenTree::Punct(p) if p.as_char() == ',' => {
                at_start = true;
                continue;
            }
            TokenTree::Ident(ident) if at_start => {
                keys.push((ident.unraw().to_string(), ident.span()));
            }
            _ => {}
        }
        at_start = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_problem_agrees_with_annals_core_event_type_rules() {
        let long = "a".repeat(MAX_NAME_LEN + 1);
        let at_limit = "a".repeat(MAX_NAME_LEN);
        for name in [
            "", "Opened", "a.b-c", " Opened", "Opened\t", "Op\0ened", "Op\u{85}", "é", &long,
            &at_limit,
        ] {
            assert_eq!(
                name_problem(name).is_none(),
                annals_core::EventType::new(name).is_ok(),
                "{name:?}"
            );
        }
        assert_eq!(MAX_NAME_LEN, annals_core::MAX_NAME_LEN);
    }

    #[test]
    fn serde_keys_reads_the_leading_identifier_of_each_entry() {
        let attrs: Vec<Attribute> = vec![
            syn::parse_quote!(#[serde(rename = "tag", bound(serialize = "T: untagged"))]),
            syn::parse_quote!(#[serde(untagged)]),
            syn::parse_quote!(#[event(tag)]),
        ];
        let keys: Vec<String> = serde_keys(&attrs).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["rename", "bound", "untagged"]);
    }
}
