//! Golden bytes: the generated messages encode exactly as the v1beta1 field numbers say.
//!
//! The plugin and the fake kubelet share one generated file, so a wrong field number
//! would pass every other test and break against a real kubelet. The expected bytes
//! are worked out by hand: a tag is `(field << 3) | wire type`, 2 for length-delimited
//! (strings, messages, map entries) and 0 for varints (bools).

use agent_mount_node::api::{
    AllocateResponse, CdiDevice, ContainerAllocateResponse, DevicePluginOptions, DeviceSpec, Mount,
    RegisterRequest,
};
use prost::Message;
use std::collections::HashMap;

#[test]
fn register_request_bytes() {
    let request = RegisterRequest {
        version: "v1beta1".into(),
        endpoint: "x.sock".into(),
        resource_name: "a/b".into(),
        options: Some(DevicePluginOptions {
            pre_start_required: true,
            get_preferred_allocation_available: true,
        }),
    };
    let mut expected = vec![0x0a, 7];
    expected.extend(b"v1beta1"); // 1: version
    expected.extend([0x12, 6]);
    expected.extend(b"x.sock"); // 2: endpoint
    expected.extend([0x1a, 3]);
    expected.extend(b"a/b"); // 3: resource_name
    expected.extend([0x22, 4, 0x08, 1, 0x10, 1]); // 4: options {1: true, 2: true}
    assert_eq!(request.encode_to_vec(), expected);
}

#[test]
fn allocate_response_bytes() {
    let container = ContainerAllocateResponse {
        envs: HashMap::from([("K".to_string(), "V".to_string())]),
        mounts: vec![Mount {
            container_path: "/c".into(),
            host_path: "/h".into(),
            read_only: true,
        }],
        devices: vec![DeviceSpec {
            container_path: "/d".into(),
            host_path: "/e".into(),
            permissions: "r".into(),
        }],
        annotations: HashMap::from([("A".to_string(), "B".to_string())]),
        cdi_devices: vec![CdiDevice { name: "n".into() }],
    };
    let response = AllocateResponse {
        container_responses: vec![container],
    };
    let inner: Vec<u8> = [
        &[0x0a, 6, 0x0a, 1, b'K', 0x12, 1, b'V'][..], // 1: envs entry {1: key, 2: value}
        &[0x12, 10, 0x0a, 2, b'/', b'c', 0x12, 2, b'/', b'h', 0x18, 1], // 2: mounts {1, 2, 3: true}
        &[
            0x1a, 11, 0x0a, 2, b'/', b'd', 0x12, 2, b'/', b'e', 0x1a, 1, b'r',
        ], // 3: devices
        &[0x22, 6, 0x0a, 1, b'A', 0x12, 1, b'B'],     // 4: annotations entry
        &[0x2a, 3, 0x0a, 1, b'n'],                    // 5: cdi_devices {1: name}
    ]
    .concat();
    let mut expected = vec![0x0a, inner.len() as u8]; // AllocateResponse 1: container_responses
    expected.extend(inner);
    assert_eq!(response.encode_to_vec(), expected);
}
