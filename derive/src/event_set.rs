//! `#[derive(EventSet)]`: reading `#[events(...)]` and writing the
//! `EventSet` impl of an enum whose variants each hold one event type.

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Attribute, Data, DataEnum, DeriveInput, Fields, Ident, LitStr, Path, Type, Variant};

use crate::attr::{self, Errors, Keys};
use crate::root::root;

/// The keys of `#[events(...)]`.
const EVENTS_KEYS: Keys<Key> = Keys {
    attribute: "events",
    keys: &[
        ("category", Key::Category),
        ("aggregate", Key::Aggregate),
        ("crate", Key::Crate),
    ],
    described: "`category` and `aggregate` (on a variant), `crate` (on the enum)",
};

/// A key of `#[events(...)]`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Category,
    Aggregate,
    Crate,
}

/// The category a variant's events live in.
enum Category {
    /// `category = "order"`, already checked against the category rules.
    Named(LitStr),
    /// `aggregate = Stock`: `<Stock as Aggregate>::CATEGORY`, known only to
    /// the compiler.
    Aggregate(Path),
}

/// What the `#[events(...)]` attributes on the enum or on one variant say.
#[derive(Default)]
struct EventsArgs {
    category: Option<Category>,
    krate: Option<Path>,
    /// Every key given, where it was written.
    keys: Vec<(Key, Span)>,
}

impl EventsArgs {
    /// Reads every `#[events(...)]` among `attrs`, refusing keys that do not
    /// belong on the enum (`on_enum`) or on a variant.
    fn read(attrs: &[Attribute], on_enum: bool, errors: &mut Errors) -> Self {
        let mut args = EventsArgs::default();
        for attr in attrs.iter().filter(|a| a.path().is_ident("events")) {
            if let Err(e) = attr.parse_nested_meta(|meta| args.read_key(&meta, errors)) {
                errors.push(e);
            }
        }
        for &(key, span) in &args.keys {
            let message = match (key, on_enum) {
                (Key::Category | Key::Aggregate, true) => format!(
                    "`{}` goes on a variant, not on the enum: each variant names the category \
                     of its own events",
                    EVENTS_KEYS.name(key)
                ),
                (Key::Crate, false) => "`crate` goes on the enum, not on a variant".to_owned(),
                _ => continue,
            };
            errors.push(syn::Error::new(span, message));
        }
        args
    }

    fn read_key(&mut self, meta: &ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<()> {
        let key = EVENTS_KEYS.read(meta, &mut self.keys, errors)?;
        let other = match key {
            Key::Category => Some(Key::Aggregate),
            Key::Aggregate => Some(Key::Category),
            Key::Crate => None,
        };
        if other.is_some_and(|other| self.keys.iter().any(|&(k, _)| k == other)) {
            errors.push(syn::Error::new(
                meta.path.span(),
                "`category` and `aggregate` both name the variant's category; keep one \
                 (`aggregate = Path` reads the aggregate's own `CATEGORY`)",
            ));
        }
        let value = meta.value()?;
        match key {
            Key::Category => {
                if !value.peek(LitStr) {
                    return Err(value.error(
                        "`category` takes a string, such as `category = \"order\"`; \
                         to use an aggregate's category, write `aggregate = Path`",
                    ));
                }
                let category: LitStr = value.parse()?;
                if let Some(problem) = category_problem(&category.value()) {
                    errors.push(syn::Error::new(
                        category.span(),
                        format!("invalid category {:?}: {problem}", category.value()),
                    ));
                }
                self.category = Some(Category::Named(category));
            }
            Key::Aggregate => self.category = Some(Category::Aggregate(attr::parse_path(value)?)),
            Key::Crate => self.krate = Some(attr::parse_path(value)?),
        }
        Ok(())
    }
}

/// The category rules of annals-core (`check_category`): what is wrong
/// with `category`, if anything.
fn category_problem(category: &str) -> Option<String> {
    attr::name_problem(category).or_else(|| {
        category.contains('-').then(|| {
            "a category must not contain '-', which separates the category from the id in a \
             stream id (`order-42`)"
                .to_owned()
        })
    })
}

/// A type or path as written, without the spaces `to_string` puts
/// around `::`, `<`, `>` and before `,`.
fn as_written(tokens: &impl ToTokens) -> String {
    let spaced = tokens.to_token_stream().to_string();
    let mut out = String::with_capacity(spaced.len());
    let mut parts = spaced.split(' ').peekable();
    while let Some(part) = parts.next() {
        out.push_str(part);
        let next = parts.peek().copied().unwrap_or("");
        let glued = |t: &str| matches!(t, "::" | "<" | ">" | "," | "&");
        if part == "," || (!next.is_empty() && !glued(part) && !glued(next)) {
            out.push(' ');
        }
    }
    out
}

/// One variant of the set: the event type it holds, and its category.
struct Member<'a> {
    variant: &'a Ident,
    ty: &'a Type,
    category: Option<Category>,
}

pub(crate) fn derive(input: &DeriveInput) -> syn::Result<TokenStream> {
    let data = match &input.data {
        Data::Enum(data) => data,
        Data::Struct(data) => {
            return Err(syn::Error::new(
                data.struct_token.span,
                "#[derive(EventSet)] works on enums whose variants each hold one event type \
                 (`Order(OrderEvent)`), not on structs; a single event type is an event set \
                 already",
            ))
        }
        Data::Union(data) => {
            return Err(syn::Error::new(
                data.union_token.span,
                "#[derive(EventSet)] works on enums whose variants each hold one event type \
                 (`Order(OrderEvent)`), not on unions",
            ))
        }
    };
    let mut errors = Errors::default();
    if !input.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &input.generics,
            "#[derive(EventSet)] does not take generic parameters: an event set names \
             concrete event types",
        ));
    }
    let args = EventsArgs::read(&input.attrs, true, &mut errors);
    let members = members(input, data, &mut errors);
    errors.finish()?;
    let root = root(args.krate, "EventSet", "events")?;
    Ok(expand(&root, &input.ident, &members))
}

/// The variants, checked: one event type each, no type and no category
/// twice.
fn members<'a>(input: &DeriveInput, data: &'a DataEnum, errors: &mut Errors) -> Vec<Member<'a>> {
    if data.variants.is_empty() {
        errors.push(syn::Error::new(
            input.ident.span(),
            format!(
                "enum `{}` has no variants; an event set needs at least one event type",
                input.ident
            ),
        ));
    }
    let mut types: HashMap<String, &Ident> = HashMap::new();
    let mut categories: HashMap<String, &Ident> = HashMap::new();
    let mut members = Vec::new();
    for variant in &data.variants {
        let args = EventsArgs::read(&variant.attrs, false, errors);
        let Some(ty) = event_type(variant, errors) else {
            continue;
        };
        let shown = as_written(ty);
        if let Some(first) = types.get(&shown) {
            errors.push(syn::Error::new_spanned(
                ty,
                format!(
                    "`{shown}` is already in variant `{first}`; an event set holds each event \
                     type in one variant"
                ),
            ));
        } else {
            types.insert(shown, &variant.ident);
        }
        // Literal categories compare by value, aggregates by path; a literal
        // and an aggregate (or two paths to one aggregate) are compared by
        // the compiler, in `checks`.
        let seen = match &args.category {
            Some(Category::Named(name)) => {
                Some((format!("category {:?}", name.value()), name.span()))
            }
            Some(Category::Aggregate(path)) => Some((
                format!("the category of `{}`", as_written(path)),
                path.span(),
            )),
            None => None,
        };
        if let Some((key, span)) = seen {
            if let Some(first) = categories.get(&key) {
                errors.push(syn::Error::new(
                    span,
                    format!(
                        "variant `{first}` already reads {key}; an event set gives each \
                         category one variant, which decodes all of its events"
                    ),
                ));
            } else {
                categories.insert(key, &variant.ident);
            }
        }
        members.push(Member {
            variant: &variant.ident,
            ty,
            category: args.category,
        });
    }
    members
}

/// The one type a variant holds, or an error at the variant.
fn event_type<'a>(variant: &'a Variant, errors: &mut Errors) -> Option<&'a Type> {
    for field in &variant.fields {
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("events")) {
            errors.push(syn::Error::new_spanned(
                attr,
                "#[events(...)] goes on the variant, not on the type it holds",
            ));
        }
    }
    let ident = &variant.ident;
    match &variant.fields {
        Fields::Unnamed(fields) if fields.unnamed.len() == 1 => {
            return fields.unnamed.first().map(|field| &field.ty);
        }
        Fields::Unit => errors.push(syn::Error::new(
            ident.span(),
            format!(
                "variant `{ident}` holds no event type; an event set's variants each hold one, \
                 as in `{ident}({ident}Event)`"
            ),
        )),
        Fields::Named(fields) => errors.push(syn::Error::new_spanned(
            fields,
            format!(
                "variant `{ident}` has named fields; an event set's variants each hold one \
                 event type, unnamed, as in `{ident}({ident}Event)`"
            ),
        )),
        Fields::Unnamed(fields) => errors.push(syn::Error::new_spanned(
            fields,
            format!(
                "variant `{ident}` holds {} types; an event set's variants each hold exactly \
                 one event type, as in `{ident}({ident}Event)`",
                fields.unnamed.len()
            ),
        )),
    }
    None
}

fn expand(root: &TokenStream, set: &Ident, members: &[Member<'_>]) -> TokenStream {
    let private = quote!(#root::__private);
    let types: Vec<&Type> = members.iter().map(|m| m.ty).collect();
    let categories: Vec<Option<TokenStream>> = members
        .iter()
        .map(|m| match &m.category {
            Some(Category::Named(name)) => Some(quote!(#name)),
            Some(Category::Aggregate(path)) => {
                Some(quote_spanned!(path.span()=> <#path as #private::Aggregate>::CATEGORY))
            }
            None => None,
        })
        .collect();

    // Every variant in a named category: read those categories whole, and
    // let decoding pick the variant by category. Otherwise some events may
    // be in any stream, and only their types say which to read.
    let narrow = if categories.iter().all(Option::is_some) {
        let categories = categories.iter().flatten();
        quote!(__read #(.category(#categories))*)
    } else {
        quote!(__read #(.events_of::<#types>())*)
    };
    let attempts = members.iter().zip(&categories).map(|(m, category)| {
        let Member { variant, ty, .. } = m;
        let attempt = quote! {
            if let ::core::option::Option::Some(__decoded) = __event.decode_known::<#ty>()? {
                return ::core::result::Result::Ok(::core::option::Option::Some(
                    Self::#variant(__decoded),
                ));
            }
        };
        match category {
            Some(category) => quote!(if __category == #category { #attempt }),
            None => attempt,
        }
    });
    let category = categories
        .iter()
        .any(Option::is_some)
        .then(|| quote!(let __category: &str = __event.stream_id.category();));
    let checks = checks(members, &categories);
    // Stated once per type, at the type, so that a type that is not an
    // event is reported once, where the variant names it, rather than at
    // each use in the impl.
    let bounds = types.iter().map(|ty| {
        let private = respan(private.clone(), ty.span());
        quote_spanned!(ty.span()=> #ty: #private::DomainEvent)
    });

    quote! {
        #checks

        #[automatically_derived]
        impl #private::EventSet for #set where #(#bounds,)* {
            fn narrow(__read: #private::ReadAll) -> #private::ReadAll {
                #narrow
            }

            fn upcasters(__builder: #private::UpcastersBuilder) -> #private::UpcastersBuilder {
                __builder #(.events::<#types>())*
            }

            fn decode(
                __event: &#private::RecordedEvent,
            ) -> ::core::result::Result<::core::option::Option<Self>, #private::EventDecodeError> {
                #category
                #(#attempts)*
                ::core::result::Result::Ok(::core::option::Option::None)
            }
        }
    }
}

/// What only the compiler can check: that no event type is in two variants
/// under two spellings (an alias), and that no aggregate's category is
/// another variant's.
fn checks(members: &[Member<'_>], categories: &[Option<TokenStream>]) -> TokenStream {
    // Two impls of one trait for one type conflict, whatever the spelling.
    let impls = members.iter().map(|m| {
        let ty = m.ty;
        quote_spanned!(ty.span()=> impl EachEventTypeInOneVariant for #ty {})
    });
    let mut asserts = Vec::new();
    for (j, later) in members.iter().enumerate() {
        for (i, earlier) in members.iter().enumerate().take(j) {
            let (Some(a), Some(b)) = (&categories[i], &categories[j]) else {
                continue;
            };
            // Two literals were compared by the derive already.
            let span = match (&earlier.category, &later.category) {
                (_, Some(Category::Aggregate(path))) | (Some(Category::Aggregate(path)), _) => {
                    path.span()
                }
                _ => continue,
            };
            let message = format!(
                "variants `{}` and `{}` read the same category; an event set gives each \
                 category one variant, which decodes all of its events",
                earlier.variant, later.variant
            );
            asserts.push(quote_spanned!(span=> assert!(!same_category(#a, #b), #message);));
        }
    }
    let same_category = (!asserts.is_empty()).then(|| {
        quote! {
            const fn same_category(a: &str, b: &str) -> bool {
                let (a, b) = (a.as_bytes(), b.as_bytes());
                if a.len() != b.len() {
                    return false;
                }
                let mut i = 0;
                while i < a.len() {
                    if a[i] != b[i] {
                        return false;
                    }
                    i += 1;
                }
                true
            }
        }
    });
    quote! {
        const _: () = {
            trait EachEventTypeInOneVariant {}
            #(#impls)*
            #same_category
            #(#asserts)*
        };
    }
}

/// `tokens`, every one of them at `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut t| {
            t.set_span(span);
            t
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::as_written;
    use syn::Type;

    #[test]
    fn as_written_shows_types_without_token_spacing() {
        for written in [
            "AccountEvent",
            "::annals_core::testkit::bank::Account",
            "events::Order<u8, String>",
            "Box<dyn Event>",
            "&'static str",
        ] {
            let ty: Type = syn::parse_str(written).expect("a valid type");
            assert_eq!(as_written(&ty), written);
        }
    }
}
