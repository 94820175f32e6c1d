//! `#[derive(DomainEvent)]` accepts what it documents and refuses, with a
//! readable message at the offending token, what would break the tag-free
//! payload or the stored names; `#[derive(EventSet)]` (in `tests/ui/event_set/`)
//! refuses what would leave an event without one variant to decode it.
//!
//! The expected messages are in `tests/ui/**/fail/*.stderr`; after a
//! deliberate change, regenerate them with `TRYBUILD=overwrite` and read the
//! diff.

#[test]
fn derives_compile_what_they_document_and_refuse_the_rest() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
    cases.pass("tests/ui/event_set/pass/*.rs");
    cases.compile_fail("tests/ui/event_set/fail/*.rs");
}
