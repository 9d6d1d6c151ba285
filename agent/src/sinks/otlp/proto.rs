//! Generated OTLP logs types and client (`proto/opentelemetry`, see
//! `build_proto.rs`). Modules mirror the proto packages because the
//! generated code refers to sibling packages by relative paths.
#![allow(clippy::all, missing_docs)]

pub mod opentelemetry {
    pub mod proto {
        pub mod common {
            pub mod v1 {
                tonic::include_proto!("opentelemetry.proto.common.v1");
            }
        }
        pub mod resource {
            pub mod v1 {
                tonic::include_proto!("opentelemetry.proto.resource.v1");
            }
        }
        pub mod logs {
            pub mod v1 {
                tonic::include_proto!("opentelemetry.proto.logs.v1");
            }
        }
        pub mod collector {
            pub mod logs {
                pub mod v1 {
                    tonic::include_proto!("opentelemetry.proto.collector.logs.v1");
                }
            }
        }
    }
}

pub use opentelemetry::proto::{
    collector::logs::v1 as collector, common::v1 as common, logs::v1 as logs, resource::v1 as resource,
};
