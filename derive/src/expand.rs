//! Writing the `DomainEvent` impl.

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Data, DataEnum, DeriveInput, Fields, Ident, LitStr};

use crate::attr::{self, Errors, EventArgs, Place};
use crate::root::root;

/// One stored event type: a variant of an enum, or a whole struct.
struct EventType {
    /// The variant, for an enum.
    variant: Option<Ident>,
    name: LitStr,
    version: u32,
}

pub(crate) fn derive(input: &DeriveInput) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let (args, types) = match &input.data {
        Data::Union(union) => {
            return Err(syn::Error::new(
                union.union_token.span,
                "#[derive(DomainEvent)] works on enums and structs, not on unions",
            ));
        }
        Data::Struct(data) => {
            let args = EventArgs::read(&input.attrs, Place::Struct, &mut errors);
            refuse_field_attrs(&data.fields, &mut errors);
            let name = args.name.clone().unwrap_or_else(|| {
                LitStr::new(&input.ident.unraw().to_string(), input.ident.span())
            });
            let version = args.version.unwrap_or(1);
            let types = vec![EventType {
                variant: None,
                name,
                version,
            }];
            (args, types)
        }
        Data::Enum(data) => {
            let args = EventArgs::read(&input.attrs, Place::Enum, &mut errors);
            attr::refuse_serde_on_enum(&input.attrs, &mut errors);
            let types = variants(input, data, &mut errors);
            (args, types)
        }
    };
    errors.finish()?;

    let root = root(args.krate, "DomainEvent", "event")?;
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    // `DomainEvent: Send + Sync + 'static`, and the payload goes through the
    // type's own serde impls: state both, so that a generic type gets its
    // impl exactly when its parameters allow it.
    let mut where_clause = where_clause.cloned().unwrap_or_else(|| syn::WhereClause {
        where_token: Default::default(),
        predicates: Default::default(),
    });
    where_clause.predicates.push(syn::parse_quote! {
        Self: #root::__private::serde::Serialize
            + #root::__private::serde::de::DeserializeOwned
            + ::core::marker::Send
            + ::core::marker::Sync
            + 'static
    });

    let names: Vec<&LitStr> = types.iter().map(|t| &t.name).collect();
    let versions: Vec<u32> = types.iter().map(|t| t.version).collect();
    let body = match &input.data {
        Data::Enum(_) => enum_body(&root, &types)?,
        _ => struct_body(&root, &types[0]),
    };
    let constants = constants(&root, input, &types)?;
    let upcasters = args.upcasters.map(|path| {
        let call = quote_spanned!(path.span()=> #path());
        quote! {
            fn upcasters() -> ::std::vec::Vec<#root::__private::Upcaster> {
                #call
            }
        }
    });

    Ok(quote! {
        #constants

        #[automatically_derived]
        impl #impl_generics #root::__private::DomainEvent for #ident #ty_generics #where_clause {
            #body

            fn known_types() -> &'static [(&'static str, u32)] {
                &[#((#names, #versions)),*]
            }

            #upcasters
        }
    })
}

/// The stored names as constants a filter can name: `OrderEvent::PAID` for
/// variant `Paid`, `Opened::EVENT_TYPE` for a struct.
fn constants(
    root: &TokenStream,
    input: &DeriveInput,
    types: &[EventType],
) -> syn::Result<TokenStream> {
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let mut seen: HashMap<String, &Ident> = HashMap::new();
    let mut items = Vec::new();
    for event in types {
        let name = &event.name;
        let (constant, doc) = match &event.variant {
            Some(variant) => {
                let constant = screaming_snake(&variant.unraw().to_string());
                if let Some(first) = seen.insert(constant.clone(), variant) {
                    return Err(syn::Error::new(
                        variant.span(),
                        format!(
                            "variants `{first}` and `{variant}` would both have the stored-name \
                             constant `{constant}`; rename one of them"
                        ),
                    ));
                }
                let doc = format!(
                    "The stored name of `{ident}::{variant}`: `{:?}`, for filters.",
                    name.value()
                );
                (Ident::new(&constant, variant.span()), doc)
            }
            None => (
                Ident::new("EVENT_TYPE", ident.span()),
                format!(
                    "The stored name of `{ident}`: `{:?}`, for filters.",
                    name.value()
                ),
            ),
        };
        items.push(quote! {
            #[doc = #doc]
            pub const #constant: #root::__private::EventType =
                #root::__private::EventType::from_checked_static(#name);
        });
    }
    Ok(quote! {
        #[automatically_derived]
        #[allow(dead_code)]
        impl #impl_generics #ident #ty_generics #where_clause {
            #(#items)*
        }
    })
}

/// `MoneyDeposited` → `MONEY_DEPOSITED`, `HTTPFailed` → `HTTP_FAILED`,
/// `Paid2` → `PAID2`.
fn screaming_snake(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() && i > 0 {
            let previous = chars[i - 1];
            let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let starts_word = previous.is_lowercase()
                || previous.is_ascii_digit()
                || (previous.is_uppercase() && next_is_lower);
            if starts_word && previous != '_' {
                out.push('_');
            }
        }
        out.extend(c.to_uppercase());
    }
    out
}

/// The stored event types of an enum's variants, checked.
fn variants(input: &DeriveInput, data: &DataEnum, errors: &mut Errors) -> Vec<EventType> {
    if data.variants.is_empty() {
        errors.push(syn::Error::new(
            input.ident.span(),
            format!(
                "enum `{}` has no variants; #[derive(DomainEvent)] needs at least one event",
                input.ident
            ),
        ));
    }
    let mut seen: HashMap<String, &Ident> = HashMap::new();
    let mut types = Vec::new();
    for variant in &data.variants {
        let args = EventArgs::read(&variant.attrs, Place::Variant, errors);
        attr::refuse_serde_on_variant(&variant.attrs, errors);
        refuse_field_attrs(&variant.fields, errors);
        let name = args.name.unwrap_or_else(|| {
            LitStr::new(&variant.ident.unraw().to_string(), variant.ident.span())
        });
        if let Some(first) = seen.get(&name.value()) {
            errors.push(syn::Error::new(
                name.span(),
                format!(
                    "stored name {:?} is already used by variant `{first}`; \
                     give each variant its own #[event(name = \"...\")]",
                    name.value()
                ),
            ));
        } else {
            seen.insert(name.value(), &variant.ident);
        }
        types.push(EventType {
            variant: Some(variant.ident.clone()),
            name,
            version: args.version.unwrap_or(1),
        });
    }
    types
}

fn refuse_field_attrs(fields: &Fields, errors: &mut Errors) {
    for field in fields {
        attr::refuse_event_attrs(&field.attrs, errors);
    }
}

fn enum_body(root: &TokenStream, types: &[EventType]) -> syn::Result<TokenStream> {
    let variants: Vec<&Ident> = types.iter().filter_map(|t| t.variant.as_ref()).collect();
    let names: Vec<&LitStr> = types.iter().map(|t| &t.name).collect();
    let versions: Vec<u32> = types.iter().map(|t| t.version).collect();
    let indexes = (0..types.len())
        .map(u32::try_from)
        .collect::<Result<Vec<u32>, _>>()
        .map_err(|_| syn::Error::new(Span::call_site(), "too many variants"))?;
    Ok(quote! {
        fn event_type(&self) -> &'static str {
            match self {
                #(Self::#variants { .. } => #names,)*
            }
        }

        fn schema_version(&self) -> u32 {
            match self {
                #(Self::#variants { .. } => #versions,)*
            }
        }

        fn encode(
            &self,
        ) -> ::core::result::Result<#root::__private::Payload, #root::__private::PayloadError> {
            #root::__private::encode_tagless(self)
        }

        fn decode(
            event_type: &str,
            schema_version: u32,
            payload: &#root::__private::Payload,
        ) -> ::core::result::Result<Self, #root::__private::DecodeError> {
            // The index is the variant's position, which is serde's own
            // variant index (the derive refuses the attributes that shift it).
            let (index, current): (u32, u32) = match event_type {
                #(#names => (#indexes, #versions),)*
                _ => {
                    return ::core::result::Result::Err(
                        #root::__private::unknown_event_type(event_type),
                    )
                }
            };
            #root::__private::check_schema_version(event_type, schema_version, current)?;
            #root::__private::decode_variant::<Self>(index, event_type, schema_version, payload)
        }
    })
}

fn struct_body(root: &TokenStream, event: &EventType) -> TokenStream {
    let EventType { name, version, .. } = event;
    quote! {
        fn event_type(&self) -> &'static str {
            #name
        }

        fn schema_version(&self) -> u32 {
            #version
        }

        fn encode(
            &self,
        ) -> ::core::result::Result<#root::__private::Payload, #root::__private::PayloadError> {
            #root::__private::Payload::encode(self)
        }

        fn decode(
            event_type: &str,
            schema_version: u32,
            payload: &#root::__private::Payload,
        ) -> ::core::result::Result<Self, #root::__private::DecodeError> {
            if event_type != #name {
                return ::core::result::Result::Err(#root::__private::unknown_event_type(event_type));
            }
            #root::__private::check_schema_version(event_type, schema_version, #version)?;
            #root::__private::decode_payload::<Self>(event_type, schema_version, payload)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::screaming_snake;

    #[test]
    fn constant_names_are_screaming_snake_case() {
        for (ident, constant) in [
            ("Opened", "OPENED"),
            ("MoneyDeposited", "MONEY_DEPOSITED"),
            ("HTTPFailed", "HTTP_FAILED"),
            ("Paid2", "PAID2"),
            ("Item2Added", "ITEM2_ADDED"),
            ("already_snake", "ALREADY_SNAKE"),
            ("Écrit", "ÉCRIT"),
        ] {
            assert_eq!(screaming_snake(ident), constant, "{ident}");
        }
    }
}
