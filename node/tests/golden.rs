//! Golden bytes: the generated messages encode exactly as the v1beta1, CSI v1 and
//! plugin registration field numbers say.
//!
//! The plugin and the fake kubelet share one generated file, so a wrong field number
//! would pass every other test and break against a real kubelet. The expected bytes
//! are worked out by hand: a tag is `(field << 3) | wire type`, 2 for length-delimited
//! (strings, messages, map entries) and 0 for varints (bools).

use agent_mount_node::device_plugin::api::{
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

/// CSI v1 and kubelet plugin registration (DESIGN §3b): the same hand-worked bytes.
mod csi {
    use agent_mount_node::csi::api::csi::volume_capability::access_mode::Mode;
    use agent_mount_node::csi::api::csi::volume_capability::{
        AccessMode, AccessType, BlockVolume, MountVolume,
    };
    use agent_mount_node::csi::api::csi::{
        NodeGetInfoResponse, NodePublishVolumeRequest, NodeUnpublishVolumeRequest, ProbeResponse,
        Topology, VolumeCapability,
    };
    use agent_mount_node::csi::api::registration::{PluginInfo, RegistrationStatus};
    use prost::Message;
    use std::collections::HashMap;

    fn map(key: &str, value: &str) -> HashMap<String, String> {
        HashMap::from([(key.to_string(), value.to_string())])
    }

    #[test]
    fn plugin_info_bytes() {
        let info = PluginInfo {
            r#type: "CSIPlugin".into(),
            name: "d.x".into(),
            endpoint: "/s".into(),
            supported_versions: vec!["1.0.0".into()],
        };
        let mut expected = vec![0x0a, 9];
        expected.extend(b"CSIPlugin"); // 1: type
        expected.extend([0x12, 3]);
        expected.extend(b"d.x"); // 2: name
        expected.extend([0x1a, 2]);
        expected.extend(b"/s"); // 3: endpoint
        expected.extend([0x22, 5]);
        expected.extend(b"1.0.0"); // 4: supported_versions
        assert_eq!(info.encode_to_vec(), expected);
    }

    #[test]
    fn registration_status_bytes() {
        let status = RegistrationStatus {
            plugin_registered: true,
            error: "e".into(),
        };
        // 1: plugin_registered (varint), 2: error
        assert_eq!(status.encode_to_vec(), [0x08, 1, 0x12, 1, b'e']);
    }

    #[test]
    fn node_publish_volume_request_bytes() {
        let request = NodePublishVolumeRequest {
            volume_id: "v".into(),
            publish_context: map("a", "b"),
            staging_target_path: "s".into(),
            target_path: "/t".into(),
            volume_capability: Some(VolumeCapability {
                access_type: Some(AccessType::Mount(MountVolume {
                    fs_type: "x".into(),
                    mount_flags: vec!["ro".into()],
                    volume_mount_group: "g".into(),
                })),
                access_mode: Some(AccessMode {
                    mode: Mode::SingleNodeReaderOnly as i32,
                }),
            }),
            readonly: true,
            secrets: map("k", "s"),
            volume_context: map("type", "instrumentation"),
        };
        let capability: Vec<u8> = [
            // 2: mount {1: fs_type, 2: mount_flags, 3: volume_mount_group}
            &[0x12, 10, 0x0a, 1, b'x', 0x12, 2, b'r', b'o', 0x1a, 1, b'g'][..],
            &[0x1a, 2, 0x08, 2], // 3: access_mode {1: SINGLE_NODE_READER_ONLY = 2}
        ]
        .concat();
        let mut context = vec![0x42, 23, 0x0a, 4]; // 8: volume_context entry {1: key, 2: value}
        context.extend(b"type");
        context.extend([0x12, 15]);
        context.extend(b"instrumentation");
        let expected: Vec<u8> = [
            &[0x0a, 1, b'v'][..],                     // 1: volume_id
            &[0x12, 6, 0x0a, 1, b'a', 0x12, 1, b'b'], // 2: publish_context entry
            &[0x1a, 1, b's'],                         // 3: staging_target_path
            &[0x22, 2, b'/', b't'],                   // 4: target_path
            &[0x2a, capability.len() as u8],          // 5: volume_capability
            &capability,
            &[0x30, 1],                               // 6: readonly
            &[0x3a, 6, 0x0a, 1, b'k', 0x12, 1, b's'], // 7: secrets entry
            &context,
        ]
        .concat();
        assert_eq!(request.encode_to_vec(), expected);

        let block = VolumeCapability {
            access_type: Some(AccessType::Block(BlockVolume {})),
            access_mode: None,
        };
        assert_eq!(block.encode_to_vec(), [0x0a, 0], "1: block, empty");
    }

    #[test]
    fn node_unpublish_volume_request_bytes() {
        let request = NodeUnpublishVolumeRequest {
            volume_id: "v".into(),
            target_path: "/t".into(),
        };
        assert_eq!(
            request.encode_to_vec(),
            [0x0a, 1, b'v', 0x12, 2, b'/', b't']
        );
    }

    #[test]
    fn node_get_info_response_bytes() {
        let response = NodeGetInfoResponse {
            node_id: "n1".into(),
            max_volumes_per_node: 300,
            accessible_topology: Some(Topology {
                segments: map("z", "a"),
            }),
        };
        let expected = [
            0x0a, 2, b'n', b'1', // 1: node_id
            0x10, 0xac, 0x02, // 2: max_volumes_per_node = 300 as a varint
            0x1a, 8, 0x0a, 6, 0x0a, 1, b'z', 0x12, 1, b'a', // 3: {1: segments entry}
        ];
        assert_eq!(response.encode_to_vec(), expected);
    }

    #[test]
    fn probe_response_bytes() {
        // 1: google.protobuf.BoolValue {1: value}; false is a present, empty wrapper.
        let ready = ProbeResponse { ready: Some(true) };
        assert_eq!(ready.encode_to_vec(), [0x0a, 2, 0x08, 1]);
        let not_ready = ProbeResponse { ready: Some(false) };
        assert_eq!(not_ready.encode_to_vec(), [0x0a, 0]);
    }
}
