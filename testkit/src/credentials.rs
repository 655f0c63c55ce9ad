//! The credentials of the kit's users: the one password every user the kit
//! creates has. A leaf module, so both the pipeline (which creates users)
//! and the frame-level helpers in `raw` (which log them in) use it without
//! depending on each other.

/// Password of every user the kit creates.
pub const TEST_PASSWORD: &str = "correct horse battery staple";
