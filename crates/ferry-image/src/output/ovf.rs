//! The OVF 1.0 descriptor (DMTF DSP0243 1.0.0, schema DSP8023) of the
//! appliance an OVA carries: one virtual system with one disk, for
//! vSphere's import (ovftool, the vSphere Client, govc, Packer).
//!
//! What VMware's parsers reject, and how this writer avoids it:
//!
//! - Elements out of the schema's order. Envelope: References,
//!   DiskSection, NetworkSection, VirtualSystem; VirtualSystem: Info,
//!   Name, ProductSection, OperatingSystemSection, VirtualHardwareSection;
//!   ProductSection: Info, Product, Vendor, Version, FullVersion,
//!   ProductUrl, VendorUrl, then Category/Property; every `rasd:` and
//!   `vssd:` element in its CIM schema's (alphabetical) order, which
//!   [`RASD_ORDER`] fixes by construction; `vmw:Config` after them.
//! - Namespace prefixes used but not declared ("xsi is an undeclared
//!   named space", opendedup/sdfs#97): every prefix (ovf, rasd, vssd,
//!   vmw, xsi) is declared on the Envelope.
//! - A File whose `ovf:size` is not the file's size ("Wrong file size
//!   specified in OVF descriptor", coreos/fedora-coreos-tracker#391): the
//!   size is the written VMDK's.
//! - Linux 4.6 and later do not boot on virtual hardware 7 and 8
//!   (coreos/bugs#1583): version 9 or later is required; SATA needs 10.
//! - Text that is not XML (control characters) or unescaped markup:
//!   refused or escaped.
//!
//! Product properties (key, type, value, label, user-configurable) are a
//! list the caller passes, so build inputs, component versions and the
//! cloud-init VMware datasource keys (`guestinfo.userdata`, ...) are all
//! the same kind of thing.

use std::collections::HashSet;
use std::fmt::Write as _;

use super::vmdk::AdapterType;

const NS_OVF: &str = "http://schemas.dmtf.org/ovf/envelope/1";
const NS_RASD: &str =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData";
const NS_VSSD: &str =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData";
const NS_VMW: &str = "http://www.vmware.com/schema/ovf";
const NS_XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// The disk format VMware expects of an OVF's stream-optimized VMDK.
pub const STREAM_OPTIMIZED: &str =
    "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized";

/// The order of the `rasd:` elements of an Item: the sequence of
/// CIM_ResourceAllocationSettingData's schema (alphabetical).
pub const RASD_ORDER: [&str; 22] = [
    "Address",
    "AddressOnParent",
    "AllocationUnits",
    "AutomaticAllocation",
    "AutomaticDeallocation",
    "Caption",
    "Connection",
    "ConsumerVisibility",
    "Description",
    "ElementName",
    "HostResource",
    "InstanceID",
    "Limit",
    "MappingBehavior",
    "OtherResourceType",
    "Parent",
    "PoolID",
    "Reservation",
    "ResourceSubType",
    "ResourceType",
    "VirtualQuantity",
    "Weight",
];

#[derive(Debug, thiserror::Error)]
pub enum OvfError {
    #[error("the OVF descriptor cannot be written: {0}")]
    Invalid(String),
}

fn invalid(what: impl Into<String>) -> OvfError {
    OvfError::Invalid(what.into())
}

/// The appliance the descriptor describes.
#[derive(Debug, Clone, PartialEq)]
pub struct Appliance {
    /// The virtual system's id and name (the VM's default name on import).
    pub name: String,
    pub product: Product,
    /// The ProductSection's properties, in order.
    pub properties: Vec<Property>,
    pub os: GuestOs,
    pub hardware: Hardware,
    /// The logical network the NIC is connected to; mapped to a real
    /// network at deploy time.
    pub network: String,
    /// How the platform hands the OVF environment (DSP0243's document of
    /// the properties' values at deploy time) to the guest: the
    /// VirtualHardwareSection's `ovf:transport` (DSP8023: "comma-separated
    /// list of supported transport types"), e.g. [`GUEST_INFO_TRANSPORT`]
    /// or `iso`; `None` for no environment.
    pub transport: Option<String>,
}

/// VMware's OVF environment transport: vSphere sets the guest variable
/// `guestinfo.ovfEnv` to the OVF environment document (every property's
/// key and value), which VMware Tools in the guest reads
/// (`vmtoolsd --cmd "info-get guestinfo.ovfEnv"`).
pub const GUEST_INFO_TRANSPORT: &str = "com.vmware.guestInfo";

/// The ProductSection's fixed fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Product {
    pub product: String,
    pub vendor: Option<String>,
    pub version: String,
    pub full_version: Option<String>,
    pub product_url: Option<String>,
    pub vendor_url: Option<String>,
}

/// One ProductSection property (DSP0243 9.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    /// Unique in the section; letters, digits, `.`, `_` and `-`.
    pub key: String,
    pub kind: PropertyType,
    pub value: String,
    pub label: Option<String>,
    pub description: Option<String>,
    /// Whether the user may change it at deploy time.
    pub user_configurable: bool,
    /// Properties with a category are grouped under it (consecutive
    /// properties of one category share one `Category` element).
    pub category: Option<String>,
}

impl Property {
    /// A fixed string property recording one input of the build.
    pub fn input(key: &str, value: &str) -> Property {
        Property {
            key: format!("input.{key}"),
            kind: PropertyType::String,
            value: value.to_owned(),
            label: Some(key.to_owned()),
            description: None,
            user_configurable: false,
            category: Some("Build inputs".to_owned()),
        }
    }
}

/// The property types of DSP0243 (CIM's intrinsic types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyType {
    String,
    Boolean,
    Uint8,
    Sint8,
    Uint16,
    Sint16,
    Uint32,
    Sint32,
    Uint64,
    Sint64,
    Real32,
    Real64,
}

impl PropertyType {
    pub fn as_str(self) -> &'static str {
        match self {
            PropertyType::String => "string",
            PropertyType::Boolean => "boolean",
            PropertyType::Uint8 => "uint8",
            PropertyType::Sint8 => "sint8",
            PropertyType::Uint16 => "uint16",
            PropertyType::Sint16 => "sint16",
            PropertyType::Uint32 => "uint32",
            PropertyType::Sint32 => "sint32",
            PropertyType::Uint64 => "uint64",
            PropertyType::Sint64 => "sint64",
            PropertyType::Real32 => "real32",
            PropertyType::Real64 => "real64",
        }
    }

    fn accepts(self, value: &str) -> bool {
        match self {
            PropertyType::String => true,
            PropertyType::Boolean => value == "true" || value == "false",
            PropertyType::Uint8 => value.parse::<u8>().is_ok(),
            PropertyType::Sint8 => value.parse::<i8>().is_ok(),
            PropertyType::Uint16 => value.parse::<u16>().is_ok(),
            PropertyType::Sint16 => value.parse::<i16>().is_ok(),
            PropertyType::Uint32 => value.parse::<u32>().is_ok(),
            PropertyType::Sint32 => value.parse::<i32>().is_ok(),
            PropertyType::Uint64 => value.parse::<u64>().is_ok(),
            PropertyType::Sint64 => value.parse::<i64>().is_ok(),
            PropertyType::Real32 | PropertyType::Real64 => value.parse::<f64>().is_ok(),
        }
    }
}

/// The guest OS: VMware's guest id (`vmw:osType`) and the CIM
/// `CIM_OperatingSystem.OsType` code OVF's `ovf:id` requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestOs {
    pub vmware_id: String,
    pub cim_id: u16,
}

impl GuestOs {
    /// `vmware_id` (e.g. `rhel9_64Guest`, `other5xLinux64Guest`) with the
    /// CIM code of its family: RHEL 79/80, CentOS 106/107, Oracle Linux
    /// 108/109, SLES 84/85, Ubuntu 93/94, Debian 95/96, else Linux 64-Bit
    /// (101) or Linux (36).
    pub fn from_vmware_id(vmware_id: &str) -> GuestOs {
        let id = vmware_id.to_ascii_lowercase();
        let bits64 = id.contains("64");
        let pick = |bits32: u16, bits64_id: u16| if bits64 { bits64_id } else { bits32 };
        let cim_id = if id.starts_with("rhel") {
            pick(79, 80)
        } else if id.starts_with("centos") {
            pick(106, 107)
        } else if id.starts_with("oraclelinux") {
            pick(108, 109)
        } else if id.starts_with("sles") {
            pick(84, 85)
        } else if id.starts_with("ubuntu") {
            pick(93, 94)
        } else if id.starts_with("debian") {
            pick(95, 96)
        } else {
            pick(36, 101)
        };
        GuestOs {
            vmware_id: vmware_id.to_owned(),
            cim_id,
        }
    }
}

/// The virtual machine's hardware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hardware {
    /// VMware virtual hardware version (`vmx-N`): 13 is vSphere 6.5.
    pub version: u32,
    pub firmware: Firmware,
    pub cpus: u32,
    pub memory_mib: u64,
    pub controller: Controller,
    pub nic: Nic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    Bios,
    Efi,
}

/// The disk controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    /// LSI Logic parallel SCSI.
    LsiLogic,
    /// VMware Paravirtual SCSI.
    Pvscsi,
    /// AHCI SATA.
    Sata,
}

impl Controller {
    /// The VMDK descriptor's `ddb.adapterType` for a disk on it.
    pub fn adapter_type(self) -> AdapterType {
        match self {
            Controller::LsiLogic => AdapterType::LsiLogic,
            Controller::Pvscsi => AdapterType::Pvscsi,
            Controller::Sata => AdapterType::Ide,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nic {
    Vmxnet3,
}

/// The disk file the descriptor references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFile {
    /// Its name in the package (`ovf:href`).
    pub href: String,
    /// Its size in bytes.
    pub size: u64,
    /// The disk's capacity in bytes.
    pub capacity: u64,
    /// Bytes of the disk that hold data.
    pub populated_size: u64,
}

/// The descriptor's text.
pub fn descriptor(appliance: &Appliance, disk: &DiskFile) -> Result<String, OvfError> {
    validate(appliance)?;
    let hw = &appliance.hardware;
    let mut x = Xml::default();
    x.out
        .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.open(
        "Envelope",
        &[
            ("xmlns", NS_OVF),
            ("xmlns:ovf", NS_OVF),
            ("xmlns:rasd", NS_RASD),
            ("xmlns:vmw", NS_VMW),
            ("xmlns:vssd", NS_VSSD),
            ("xmlns:xsi", NS_XSI),
        ],
    )?;
    x.open("References", &[])?;
    x.empty(
        "File",
        &[
            ("ovf:href", &disk.href),
            ("ovf:id", "file1"),
            ("ovf:size", &disk.size.to_string()),
        ],
    )?;
    x.close("References");

    x.open("DiskSection", &[])?;
    x.leaf("Info", &[], "Virtual disk information")?;
    x.empty(
        "Disk",
        &[
            ("ovf:capacity", &disk.capacity.to_string()),
            ("ovf:capacityAllocationUnits", "byte"),
            ("ovf:diskId", "vmdisk1"),
            ("ovf:fileRef", "file1"),
            ("ovf:format", STREAM_OPTIMIZED),
            ("ovf:populatedSize", &disk.populated_size.to_string()),
        ],
    )?;
    x.close("DiskSection");

    x.open("NetworkSection", &[])?;
    x.leaf("Info", &[], "The list of logical networks")?;
    x.open("Network", &[("ovf:name", &appliance.network)])?;
    x.leaf(
        "Description",
        &[],
        &format!("The {} network", appliance.network),
    )?;
    x.close("Network");
    x.close("NetworkSection");

    x.open("VirtualSystem", &[("ovf:id", &appliance.name)])?;
    x.leaf("Info", &[], "A virtual machine")?;
    x.leaf("Name", &[], &appliance.name)?;
    product_section(&mut x, appliance)?;

    let cim_id = appliance.os.cim_id.to_string();
    x.open(
        "OperatingSystemSection",
        &[("ovf:id", &cim_id), ("vmw:osType", &appliance.os.vmware_id)],
    )?;
    x.leaf("Info", &[], "The kind of installed guest operating system")?;
    x.close("OperatingSystemSection");

    match &appliance.transport {
        Some(transport) => x.open("VirtualHardwareSection", &[("ovf:transport", transport)])?,
        None => x.open("VirtualHardwareSection", &[])?,
    }
    x.leaf("Info", &[], "Virtual hardware requirements")?;
    x.open("System", &[])?;
    x.leaf("vssd:ElementName", &[], "Virtual Hardware Family")?;
    x.leaf("vssd:InstanceID", &[], "0")?;
    x.leaf("vssd:VirtualSystemIdentifier", &[], &appliance.name)?;
    x.leaf(
        "vssd:VirtualSystemType",
        &[],
        &format!("vmx-{}", hw.version),
    )?;
    x.close("System");
    for item in items(hw, &appliance.network) {
        item.write(&mut x)?;
    }
    let firmware = match hw.firmware {
        Firmware::Bios => "bios",
        Firmware::Efi => "efi",
    };
    x.empty(
        "vmw:Config",
        &[
            ("ovf:required", "false"),
            ("vmw:key", "firmware"),
            ("vmw:value", firmware),
        ],
    )?;
    x.close("VirtualHardwareSection");
    x.close("VirtualSystem");
    x.close("Envelope");
    Ok(x.out)
}

fn product_section(x: &mut Xml, appliance: &Appliance) -> Result<(), OvfError> {
    let p = &appliance.product;
    x.open("ProductSection", &[])?;
    x.leaf("Info", &[], "Information about the installed software")?;
    x.leaf("Product", &[], &p.product)?;
    if let Some(vendor) = &p.vendor {
        x.leaf("Vendor", &[], vendor)?;
    }
    x.leaf("Version", &[], &p.version)?;
    for (tag, value) in [
        ("FullVersion", &p.full_version),
        ("ProductUrl", &p.product_url),
        ("VendorUrl", &p.vendor_url),
    ] {
        if let Some(value) = value {
            x.leaf(tag, &[], value)?;
        }
    }
    let mut category = None;
    for property in &appliance.properties {
        if property.category.is_some() && property.category != category {
            category = property.category.clone();
            x.leaf(
                "Category",
                &[],
                property.category.as_deref().unwrap_or_default(),
            )?;
        }
        let attrs = [
            ("ovf:key", property.key.as_str()),
            ("ovf:type", property.kind.as_str()),
            (
                "ovf:userConfigurable",
                if property.user_configurable {
                    "true"
                } else {
                    "false"
                },
            ),
            ("ovf:value", property.value.as_str()),
        ];
        if property.label.is_none() && property.description.is_none() {
            x.empty("Property", &attrs)?;
            continue;
        }
        x.open("Property", &attrs)?;
        if let Some(label) = &property.label {
            x.leaf("Label", &[], label)?;
        }
        if let Some(description) = &property.description {
            x.leaf("Description", &[], description)?;
        }
        x.close("Property");
    }
    x.close("ProductSection");
    Ok(())
}

/// Checks what [`descriptor`] would refuse, before anything is written.
pub fn validate(appliance: &Appliance) -> Result<(), OvfError> {
    let hw = &appliance.hardware;
    if appliance.name.trim().is_empty() {
        return Err(invalid("the appliance has no name"));
    }
    if appliance.network.trim().is_empty() {
        return Err(invalid("the NIC's network has no name"));
    }
    if hw.version < 9 {
        return Err(invalid(format!(
            "virtual hardware vmx-{} is too old: Linux 4.6 and later do not boot on 7 and 8; \
             use 9 or later (13 is vSphere 6.5)",
            hw.version
        )));
    }
    if hw.controller == Controller::Sata && hw.version < 10 {
        return Err(invalid(format!(
            "a SATA controller needs virtual hardware vmx-10 or later, not vmx-{}",
            hw.version
        )));
    }
    if hw.cpus == 0 || hw.memory_mib == 0 {
        return Err(invalid("the VM needs at least one CPU and some memory"));
    }
    if appliance.product.product.is_empty() || appliance.product.version.is_empty() {
        return Err(invalid("the product needs a name and a version"));
    }
    let mut keys = HashSet::new();
    for p in &appliance.properties {
        let key_ok = !p.key.is_empty()
            && p.key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !key_ok {
            return Err(invalid(format!(
                "property key {:?}: use letters, digits, '.', '_' and '-'",
                p.key
            )));
        }
        if !keys.insert(p.key.as_str()) {
            return Err(invalid(format!("property key {:?} appears twice", p.key)));
        }
        if !p.kind.accepts(&p.value) {
            return Err(invalid(format!(
                "property {}: {:?} is not a {}",
                p.key,
                p.value,
                p.kind.as_str()
            )));
        }
    }
    Ok(())
}

/// One `Item` of the VirtualHardwareSection.
struct Item {
    rasd: Vec<(&'static str, String)>,
    config: Vec<(&'static str, &'static str)>,
}

impl Item {
    fn write(mut self, x: &mut Xml) -> Result<(), OvfError> {
        let position = |name: &str| {
            RASD_ORDER
                .iter()
                .position(|&n| n == name)
                .expect("every rasd element is in RASD_ORDER")
        };
        self.rasd.sort_by_key(|(name, _)| position(name));
        x.open("Item", &[])?;
        for (name, value) in &self.rasd {
            x.leaf(&format!("rasd:{name}"), &[], value)?;
        }
        for (key, value) in &self.config {
            x.empty(
                "vmw:Config",
                &[
                    ("ovf:required", "false"),
                    ("vmw:key", key),
                    ("vmw:value", value),
                ],
            )?;
        }
        x.close("Item");
        Ok(())
    }
}

fn items(hw: &Hardware, network: &str) -> Vec<Item> {
    let s = |v: &str| v.to_owned();
    let (controller_type, controller_subtype, controller_name) = match hw.controller {
        Controller::LsiLogic => ("6", "lsilogic", "SCSI Controller"),
        Controller::Pvscsi => ("6", "VirtualSCSI", "SCSI Controller"),
        Controller::Sata => ("20", "vmware.sata.ahci", "SATA Controller"),
    };
    let Nic::Vmxnet3 = hw.nic;
    vec![
        Item {
            rasd: vec![
                ("AllocationUnits", s("hertz * 10^6")),
                ("Description", s("Number of Virtual CPUs")),
                ("ElementName", format!("{} virtual CPU(s)", hw.cpus)),
                ("InstanceID", s("1")),
                ("ResourceType", s("3")),
                ("VirtualQuantity", hw.cpus.to_string()),
            ],
            config: vec![],
        },
        Item {
            rasd: vec![
                ("AllocationUnits", s("byte * 2^20")),
                ("Description", s("Memory Size")),
                ("ElementName", format!("{}MB of memory", hw.memory_mib)),
                ("InstanceID", s("2")),
                ("ResourceType", s("4")),
                ("VirtualQuantity", hw.memory_mib.to_string()),
            ],
            config: vec![],
        },
        Item {
            rasd: vec![
                ("Address", s("0")),
                ("Description", s(controller_name)),
                ("ElementName", format!("{controller_name} 0")),
                ("InstanceID", s("3")),
                ("ResourceSubType", s(controller_subtype)),
                ("ResourceType", s(controller_type)),
            ],
            config: vec![],
        },
        Item {
            rasd: vec![
                ("AddressOnParent", s("0")),
                ("ElementName", s("Hard Disk 1")),
                ("HostResource", s("ovf:/disk/vmdisk1")),
                ("InstanceID", s("4")),
                ("Parent", s("3")),
                ("ResourceType", s("17")),
            ],
            config: vec![],
        },
        Item {
            rasd: vec![
                ("AddressOnParent", s("0")),
                ("AutomaticAllocation", s("true")),
                ("Connection", s(network)),
                (
                    "Description",
                    format!("VmxNet3 ethernet adapter on \"{network}\""),
                ),
                ("ElementName", s("Network adapter 1")),
                ("InstanceID", s("5")),
                ("ResourceSubType", s("VmxNet3")),
                ("ResourceType", s("10")),
            ],
            config: vec![("wakeOnLanEnabled", "false")],
        },
    ]
}

/// A minimal indenting XML writer; every text and attribute value is
/// escaped, and characters XML 1.0 cannot carry are refused.
#[derive(Default)]
struct Xml {
    out: String,
    depth: usize,
}

impl Xml {
    fn start(&mut self, tag: &str, attrs: &[(&str, &str)]) -> Result<(), OvfError> {
        self.out.push_str(&"  ".repeat(self.depth));
        self.out.push('<');
        self.out.push_str(tag);
        for (name, value) in attrs {
            let _ = write!(self.out, " {name}=\"{}\"", escape(value)?);
        }
        Ok(())
    }

    fn open(&mut self, tag: &str, attrs: &[(&str, &str)]) -> Result<(), OvfError> {
        self.start(tag, attrs)?;
        self.out.push_str(">\n");
        self.depth += 1;
        Ok(())
    }

    fn close(&mut self, tag: &str) {
        self.depth -= 1;
        let _ = writeln!(self.out, "{}</{tag}>", "  ".repeat(self.depth));
    }

    fn leaf(&mut self, tag: &str, attrs: &[(&str, &str)], text: &str) -> Result<(), OvfError> {
        self.start(tag, attrs)?;
        let _ = writeln!(self.out, ">{}</{tag}>", escape(text)?);
        Ok(())
    }

    fn empty(&mut self, tag: &str, attrs: &[(&str, &str)]) -> Result<(), OvfError> {
        self.start(tag, attrs)?;
        self.out.push_str("/>\n");
        Ok(())
    }
}

fn escape(text: &str) -> Result<String, OvfError> {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Kept as character references so attribute values keep them.
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 || matches!(c, '\u{fffe}' | '\u{ffff}') => {
                return Err(invalid(format!(
                    "{text:?} holds the control character U+{:04X}, which XML cannot carry",
                    c as u32
                )));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_refuses_control_characters() {
        assert_eq!(escape("a<b & \"c\"").unwrap(), "a&lt;b &amp; &quot;c&quot;");
        assert_eq!(escape("l1\nl2").unwrap(), "l1&#10;l2");
        assert!(escape("bell\u{7}").is_err());
    }

    #[test]
    fn guest_os_codes() {
        assert_eq!(GuestOs::from_vmware_id("rhel9_64Guest").cim_id, 80);
        assert_eq!(GuestOs::from_vmware_id("other5xLinux64Guest").cim_id, 101);
        assert_eq!(GuestOs::from_vmware_id("ubuntu64Guest").cim_id, 94);
    }
}
