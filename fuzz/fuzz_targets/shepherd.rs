//! Shepherd's answers as the agent reads them: the control socket's
//! s-expression reply (`running_from_reply`) and `herd status` output
//! (`started`). No property beyond no panic (nor a stack overflow).
#![no_main]

use fruix_agent::checks::shepherd::{running_from_reply, started};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = running_from_reply(&text) {
        let _ = e.to_string();
    }
    let _ = started(&text);
});
