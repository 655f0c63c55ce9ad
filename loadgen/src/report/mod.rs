//! What a run tells people: the report's types ([`types`]; `report.json` is
//! [`types::RunReport`]), the text report ([`text`]), the report directory
//! with the histogram files ([`files`]), the plots ([`plots`]), several
//! processes' reports merged ([`merge`]) and whether a run passed
//! ([`verdict`]).

pub mod files;
pub mod merge;
pub mod plots;
pub mod rounds;
pub mod text;
pub mod types;
pub mod verdict;
