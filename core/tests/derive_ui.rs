//! `#[derive(DomainEvent)]` accepts what it documents and refuses, with a
//! readable message at the offending token, what would break the tag-free
//! payload or the stored names.
//!
//! The expected messages are in `tests/ui/fail/*.stderr`; after a deliberate
//! change, regenerate them with `TRYBUILD=overwrite` and read the diff.

#[test]
fn derive_compiles_what_it_documents_and_refuses_the_rest() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
