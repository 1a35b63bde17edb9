import CLibDW

/// What reading a compilation unit's location lists needs to know of the unit.
struct LocationListUnit {
    /// Before DWARF 5 the lists are in `.debug_loc`, as address pairs; from 5 in `.debug_loclists`,
    /// as tagged entries.
    var version: Int
    var addressSize: Int
    /// 4 in 32-bit DWARF, 8 in 64-bit DWARF.
    var offsetSize: Int
    /// What list entries are relative to until one of them sets another base.
    var baseAddress: UInt64
    /// The unit's addresses in `.debug_addr`, which DWARF 5 entries may name by index.
    var addresses: DWARFAddressTable
    /// `DW_AT_loclists_base`, where the offsets of lists named by index (`DW_FORM_loclistx`) start.
    var loclistsBase: UInt64?

    var sectionName: String { version < 5 ? ".debug_loc" : ".debug_loclists" }

    /// The size of a reference to `.debug_info` in an expression: DWARF 2 wrote it address-sized.
    var referenceSize: Int { version == 2 ? addressSize : offsetSize }
}

/// A unit's entries in `.debug_addr`, as libdw's `__libdw_addrx` (elfutils 0.188) reads them.
struct DWARFAddressTable {
    /// The inflated `.debug_addr`, empty when the file has none.
    var section: UnsafeRawBufferPointer
    /// Where the unit's entries start (`DW_AT_addr_base`).
    var base: UInt64
    var addressSize: Int

    /// Nil when the entry lies outside the section.
    func address(at index: UInt64) -> UInt64? {
        let (offset, overflow) = index.multipliedReportingOverflow(by: UInt64(addressSize))
        guard !overflow, base <= UInt64(section.count), offset <= UInt64(section.count) - base else { return nil }
        var cursor = ByteCursor(UnsafeRawBufferPointer(rebasing: section[Int(base + offset)...]))
        return try? cursor.unsigned(size: addressSize)
    }
}

/// One location list: where a variable is, range by range of the code.
enum LocationList {
    /// The operations of the first entry of the list at `list` whose range holds `address`, as
    /// libdw's `dwarf_getlocation_addr` (elfutils 0.188) finds them. Entries after that one are
    /// not read.
    ///
    /// - Returns: nil when no entry holds `address`, or its expression cannot be decoded (see
    ///   ``DWARFOperation/operations(of:unit:)``).
    /// - Throws: ``ByteCursor/End`` when the list runs past the bytes `list` holds;
    ///   ``DWARFReader/Unreadable`` for an entry that is not DWARF.
    static func operations(at address: UInt64, in list: inout ByteCursor, unit: LocationListUnit) throws
        -> [DWARFOperation]?
    {
        var base = unit.baseAddress
        while true {
            let entry =
                unit.version < 5
                ? try debugLocEntry(&list, base: base, unit: unit)
                : try debugLoclistsEntry(&list, base: base, unit: unit)
            switch entry {
            case .endOfList:
                return nil
            case .newBase(let address):
                base = address
            case .range(let start, let end, let expression):
                if start <= address, address < end { return DWARFOperation.operations(of: expression, unit: unit) }
            }
        }
    }

    private enum Entry {
        case endOfList
        /// Later entries are relative to this address.
        case newBase(UInt64)
        /// Where the code in `start..<end` (base included) finds the variable.
        case range(start: UInt64, end: UInt64, expression: UnsafeRawBufferPointer)
    }

    /// The next entry of a DWARF 2–4 list in `.debug_loc`: address pairs, the largest address as
    /// the start marking a new base, two zeroes the end.
    private static func debugLocEntry(_ list: inout ByteCursor, base: UInt64, unit: LocationListUnit) throws -> Entry {
        let start = try list.unsigned(size: unit.addressSize)
        let end = try list.unsigned(size: unit.addressSize)
        let selectsBase: UInt64 = unit.addressSize == 8 ? .max : UInt64(UInt32.max)
        if start == selectsBase {
            guard end != selectsBase else {
                throw DWARFReader.Unreadable(reason: "a base address selection entry selects the marker itself as base")
            }
            return .newBase(end)
        }
        if start == 0 && end == 0 { return .endOfList }
        let expression = try list.bytes(count: try list.unsigned(size: 2))
        return .range(start: start &+ base, end: end &+ base, expression: expression)
    }

    /// The next entry of a DWARF 5 list in `.debug_loclists`: a `DW_LLE_*` kind, then its operands.
    private static func debugLoclistsEntry(_ list: inout ByteCursor, base: UInt64, unit: LocationListUnit) throws
        -> Entry
    {
        func indexedAddress() throws -> UInt64 {
            let index = try list.unsignedLEB128()
            guard let address = unit.addresses.address(at: index) else {
                throw DWARFReader.Unreadable(
                    reason: "address index \(index) lies outside .debug_addr (\(unit.addresses.section.count) bytes, "
                        + "the unit's entries from offset 0x\(String(unit.addresses.base, radix: 16)))")
            }
            return address
        }
        let kind = try list.byte()
        let start: UInt64
        let end: UInt64
        switch Int(kind) {
        case Int(DW_LLE_end_of_list):
            return .endOfList
        case Int(DW_LLE_base_addressx):
            return .newBase(try indexedAddress())
        case Int(DW_LLE_base_address):
            return .newBase(try list.unsigned(size: unit.addressSize))
        case Int(DW_LLE_startx_endx):
            start = try indexedAddress()
            end = try indexedAddress()
        case Int(DW_LLE_startx_length):
            start = try indexedAddress()
            end = start &+ (try list.unsignedLEB128())
        case Int(DW_LLE_offset_pair):
            start = base &+ (try list.unsignedLEB128())
            end = base &+ (try list.unsignedLEB128())
        case Int(DW_LLE_default_location):
            (start, end) = (0, .max)
        case Int(DW_LLE_start_end):
            start = try list.unsigned(size: unit.addressSize)
            end = try list.unsigned(size: unit.addressSize)
        case Int(DW_LLE_start_length):
            start = try list.unsigned(size: unit.addressSize)
            end = start &+ (try list.unsignedLEB128())
        default:
            throw DWARFReader.Unreadable(reason: "an entry of unknown kind 0x\(String(kind, radix: 16))")
        }
        return .range(start: start, end: end, expression: try list.bytes(count: try list.unsignedLEB128()))
    }
}
