//! Where the annals items are, for the code a derive writes.

use proc_macro2::{Span, TokenStream};
use proc_macro_crate::{crate_name, FoundCrate};
use quote::quote;
use syn::{Ident, Path};

/// The path to annals-core's items: the `crate = ...` key of the derive's
/// attribute (`#[<attribute>(crate = ...)]`), else `annals-core` if the
/// calling package depends on it (or is it), else the `annals` facade.
/// `derive` and `attribute` name the derive and its attribute in the error.
pub(crate) fn root(krate: Option<Path>, derive: &str, attribute: &str) -> syn::Result<TokenStream> {
    if let Some(path) = krate {
        return Ok(quote!(#path));
    }
    let found = match crate_name("annals-core") {
        // annals-core itself declares `extern crate self as annals_core`, and
        // its tests and examples see it as a dependency under that name.
        Ok(FoundCrate::Itself) => Ok("annals_core".to_owned()),
        Ok(FoundCrate::Name(name)) => Ok(name),
        Err(_) => match crate_name("annals") {
            Ok(FoundCrate::Itself) => Ok("annals".to_owned()),
            Ok(FoundCrate::Name(name)) => Ok(name),
            Err(e) => Err(e),
        },
    };
    match found {
        Ok(name) => {
            let name = Ident::new(&name, Span::call_site());
            Ok(quote!(::#name))
        }
        Err(_) => Err(syn::Error::new(
            Span::call_site(),
            format!(
                "#[derive({derive})] found neither `annals-core` nor `annals` among the \
                 dependencies in Cargo.toml; add one, or name a renamed one with \
                 #[{attribute}(crate = path::to::annals)]"
            ),
        )),
    }
}
