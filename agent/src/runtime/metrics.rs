//! containerd's task metrics (the Tasks `Metrics` RPC): each task's cgroup statistics arrive as
//! an `Any` holding containerd/cgroups' `io.containerd.cgroups.v1.Metrics` (cgroup v1) or
//! `io.containerd.cgroups.v2.Metrics` (v2). Only the few fields `top` needs are declared here,
//! with the field numbers of cgroups' `stats/v1` and `cgroup2/stats` metrics.proto.

use containerd_client::services::v1 as cs;
use corral_containerd::Client;
use prost::Message;

use super::RuntimeError;

pub const V1_TYPE: &str = "io.containerd.cgroups.v1.Metrics";
pub const V2_TYPE: &str = "io.containerd.cgroups.v2.Metrics";

/// One task's cumulative CPU time and current memory working set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// CPU time used since the task started, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use minus what the kernel may reclaim at once (inactive file pages).
    pub working_set: u64,
}

/// Kubelet's working set: usage less inactive file-backed memory, never below zero.
pub fn working_set(usage: u64, inactive_file: u64) -> u64 {
    usage.saturating_sub(inactive_file)
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("task metrics of type {0:?} are neither cgroup v1 nor v2 metrics")]
    UnknownType(String),
    #[error("task metrics of type {type_url:?} do not decode: {source}")]
    Decode {
        type_url: String,
        #[source]
        source: prost::DecodeError,
    },
}

/// The cgroup v1 messages (`io.containerd.cgroups.v1`), only the fields used.
pub mod v1 {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metrics {
        #[prost(message, optional, tag = "3")]
        pub cpu: Option<CpuStat>,
        #[prost(message, optional, tag = "4")]
        pub memory: Option<MemoryStat>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CpuStat {
        #[prost(message, optional, tag = "1")]
        pub usage: Option<CpuUsage>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CpuUsage {
        /// Nanoseconds.
        #[prost(uint64, tag = "1")]
        pub total: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MemoryStat {
        #[prost(uint64, tag = "30")]
        pub total_inactive_file: u64,
        #[prost(message, optional, tag = "33")]
        pub usage: Option<MemoryEntry>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MemoryEntry {
        #[prost(uint64, tag = "2")]
        pub usage: u64,
    }
}

/// The cgroup v2 messages (`io.containerd.cgroups.v2`), only the fields used.
pub mod v2 {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metrics {
        #[prost(message, optional, tag = "2")]
        pub cpu: Option<CpuStat>,
        #[prost(message, optional, tag = "4")]
        pub memory: Option<MemoryStat>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CpuStat {
        #[prost(uint64, tag = "1")]
        pub usage_usec: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MemoryStat {
        #[prost(uint64, tag = "13")]
        pub inactive_file: u64,
        #[prost(uint64, tag = "32")]
        pub usage: u64,
    }
}

/// Decodes one task's metrics `Any` (its type URL may carry a `/`-separated prefix).
pub fn decode(any: &prost_types::Any) -> Result<Usage, DecodeError> {
    let name = any.type_url.rsplit('/').next().unwrap_or("");
    let err = |source| DecodeError::Decode {
        type_url: any.type_url.clone(),
        source,
    };
    match name {
        V1_TYPE => {
            let m = v1::Metrics::decode(any.value.as_slice()).map_err(err)?;
            let cpu_ns = m.cpu.and_then(|c| c.usage).map(|u| u.total).unwrap_or(0);
            let mem = m.memory.unwrap_or_default();
            let usage = mem.usage.map(|u| u.usage).unwrap_or(0);
            Ok(Usage {
                cpu_ns,
                working_set: working_set(usage, mem.total_inactive_file),
            })
        }
        V2_TYPE => {
            let m = v2::Metrics::decode(any.value.as_slice()).map_err(err)?;
            let mem = m.memory.unwrap_or_default();
            Ok(Usage {
                cpu_ns: m
                    .cpu
                    .map(|c| c.usage_usec)
                    .unwrap_or(0)
                    .saturating_mul(1000),
                working_set: working_set(mem.usage, mem.inactive_file),
            })
        }
        other => Err(DecodeError::UnknownType(other.to_string())),
    }
}

/// Every task's usage in the client's namespace, by container id. A task whose metrics do not
/// decode is left out (logged), as containerd itself leaves out a task it cannot read.
pub async fn task_usage(client: &Client) -> Result<Vec<(String, Usage)>, RuntimeError> {
    let metrics = client
        .tasks()
        .metrics(client.req(cs::MetricsRequest { filters: vec![] }, None))
        .await
        .map_err(RuntimeError::grpc("metrics", ""))?
        .into_inner()
        .metrics;
    Ok(metrics
        .into_iter()
        .filter_map(|m| {
            let any = m.data?;
            match decode(&any) {
                Ok(u) => Some((m.id, u)),
                Err(e) => {
                    tracing::debug!(container = %m.id, error = %e, "task metrics skipped");
                    None
                }
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any<M: Message>(type_url: &str, m: &M) -> prost_types::Any {
        prost_types::Any {
            type_url: type_url.into(),
            value: m.encode_to_vec(),
        }
    }

    #[test]
    fn working_set_is_usage_less_inactive_file_and_never_negative() {
        for (usage, inactive, want) in [
            (100 << 20, 30 << 20, 70 << 20),
            (100, 0, 100),
            (100, 100, 0),
            // The kernel's counters are read one after the other: inactive may exceed usage.
            (100, 150, 0),
        ] {
            assert_eq!(working_set(usage, inactive), want, "{usage} - {inactive}");
        }
    }

    #[test]
    fn cgroup_v1_metrics_give_cpu_total_and_working_set() {
        let m = v1::Metrics {
            cpu: Some(v1::CpuStat {
                usage: Some(v1::CpuUsage { total: 5_000_000 }),
            }),
            memory: Some(v1::MemoryStat {
                total_inactive_file: 4096,
                usage: Some(v1::MemoryEntry { usage: 10_240 }),
            }),
        };
        let got = decode(&any(V1_TYPE, &m)).unwrap();
        assert_eq!(
            got,
            Usage {
                cpu_ns: 5_000_000,
                working_set: 6144
            }
        );
        // containerd may send the type URL with a prefix.
        let got = decode(&any(&format!("types.googleapis.com/{V1_TYPE}"), &m)).unwrap();
        assert_eq!(got.cpu_ns, 5_000_000);
    }

    #[test]
    fn cgroup_v2_metrics_give_cpu_in_nanoseconds_and_working_set() {
        let m = v2::Metrics {
            cpu: Some(v2::CpuStat { usage_usec: 1500 }),
            memory: Some(v2::MemoryStat {
                inactive_file: 1000,
                usage: 9000,
            }),
        };
        let got = decode(&any(V2_TYPE, &m)).unwrap();
        assert_eq!(
            got,
            Usage {
                cpu_ns: 1_500_000,
                working_set: 8000
            }
        );
    }

    /// The field numbers are cgroups' own: a message encoded by hand with them decodes.
    #[test]
    fn v1_field_numbers_match_containerd_cgroups() {
        // Metrics{cpu(3): CPUStat{usage(1): CPUUsage{total(1): 7}},
        //         memory(4): MemoryStat{total_inactive_file(30): 1, usage(33): {usage(2): 9}}}
        let cpu = [0x0a, 0x02, 0x08, 0x07];
        let mut bytes = vec![0x1a, cpu.len() as u8];
        bytes.extend(cpu);
        let mem = [0xf0, 0x01, 0x01, 0x8a, 0x02, 0x02, 0x10, 0x09];
        bytes.extend([0x22, mem.len() as u8]);
        bytes.extend(mem);
        let got = decode(&prost_types::Any {
            type_url: V1_TYPE.into(),
            value: bytes,
        })
        .unwrap();
        assert_eq!(
            got,
            Usage {
                cpu_ns: 7,
                working_set: 8
            }
        );
    }

    #[test]
    fn other_metrics_types_are_refused() {
        let err = decode(&prost_types::Any {
            type_url: "io.containerd.windows.Stats".into(),
            value: vec![],
        })
        .unwrap_err();
        assert!(matches!(err, DecodeError::UnknownType(_)), "{err}");
    }
}
