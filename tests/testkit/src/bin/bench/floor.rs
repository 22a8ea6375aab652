//! The floor: one unblock's APDUs from a minimal `pcsc` loop in this process.

use std::ffi::CString;
use std::time::Instant;

use pcsc::{Context, Disposition, Protocols, Scope, ShareMode};

use crate::proc::{self_cpu_ms, Sample};
use crate::{die, exchange};

/// The floor: one unblock's APDUs from this process, with the session around them.
pub struct Floor {
    pub reader: CString,
    pub apdus: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Floor {
    pub fn new(reader: &str) -> Floor {
        Floor {
            reader: CString::new(reader).unwrap_or_else(|_| die("reader name with NUL")),
            apdus: exchange()
                .into_iter()
                .map(|(c, r)| (hex::decode(c).expect("hex"), hex::decode(r).expect("hex")))
                .collect(),
        }
    }

    pub fn run(&self) -> Result<Sample, String> {
        let mut buf = [0u8; pcsc::MAX_BUFFER_SIZE];
        let cpu0 = self_cpu_ms();
        let t0 = Instant::now();
        let ctx = Context::establish(Scope::User).map_err(|e| format!("establish: {e}"))?;
        let mut card = ctx
            .connect(&self.reader, ShareMode::Shared, Protocols::ANY)
            .map_err(|e| format!("connect: {e}"))?;
        let apdu_time;
        {
            let tx = card
                .transaction()
                .map_err(|e| format!("transaction: {e}"))?;
            let a0 = Instant::now();
            for (cmd, want) in &self.apdus {
                let got = tx
                    .transmit(cmd, &mut buf)
                    .map_err(|e| format!("transmit: {e}"))?;
                if got != want.as_slice() {
                    return Err(format!(
                        "floor: {} answered {}, expected {}",
                        hex::encode_upper(cmd),
                        hex::encode_upper(got),
                        hex::encode_upper(want)
                    ));
                }
            }
            apdu_time = a0.elapsed();
            tx.end(Disposition::LeaveCard)
                .map_err(|(_, e)| format!("end transaction: {e}"))?;
        }
        card.disconnect(Disposition::ResetCard)
            .map_err(|(_, e)| format!("disconnect: {e}"))?;
        ctx.release().map_err(|(_, e)| format!("release: {e}"))?;
        let wall = t0.elapsed();
        Ok(Sample {
            wall_ms: wall.as_secs_f64() * 1000.0,
            cpu_ms: self_cpu_ms() - cpu0,
            rss_kib: 0.0,
            apdu_ms: apdu_time.as_secs_f64() * 1000.0,
        })
    }
}
