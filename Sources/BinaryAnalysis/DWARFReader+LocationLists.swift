import CLibDW

/// Where parameters are at a function's entry. An expression in `.debug_info` itself is libdw's
/// to read; a location list is read after the walk over the entries, with the lists of every
/// other parameter, in one pass over its section (LocationListSection.swift).
extension DWARFReader {
    /// A formal parameter as the walk over the entries finds it.
    struct FoundParameter {
        var name: String
        var typeName: String
        /// The size of its type, when DWARF gives one.
        var valueSize: Int?
        var location: FoundLocation
    }

    enum FoundLocation {
        /// The operations at the function's entry, as libdw decoded them; nil when there are none.
        case operations([DWARFOperation]?)
        case list(LocationListRequest)
    }

    /// A location list to look up the function's entry in.
    struct LocationListRequest {
        enum Start {
            /// An offset into the section (`DW_FORM_sec_offset`, or before DWARF 4 `DW_FORM_data4`/`8`).
            case offset(UInt64)
            /// An index into the unit's table of offsets (`DW_FORM_loclistx`).
            case index(UInt64)
        }

        var start: Start
        /// The function's entry.
        var address: UInt64
        var unit: LocationListUnit
    }

    /// What reading the location lists of `unit`, whose entry is `unitEntry`, needs to know of it,
    /// found as libdw finds it (`__libdw_cu_base_address`, `__libdw_cu_addr_base`, elfutils 0.188).
    func locationListUnit(_ unit: OpaquePointer, entry unitEntry: inout Dwarf_Die) -> LocationListUnit {
        var version: Dwarf_Half = 0
        var addressSize: UInt8 = 8
        var offsetSize: UInt8 = 4
        _ = dwarf_cu_info(unit, &version, nil, nil, nil, nil, &addressSize, &offsetSize)
        // DW_AT_low_pc; else DW_AT_entry_pc, which GCC writes alone for a unit of scattered code; else 0.
        var base: Dwarf_Addr = 0
        var entryPC = Dwarf_Attribute()
        if dwarf_lowpc(&unitEntry, &base) != 0,
            dwarf_formaddr(dwarf_attr(&unitEntry, UInt32(DW_AT_entry_pc), &entryPC), &base) != 0
        {
            base = 0
        }
        var attribute = Dwarf_Attribute()
        var addressBase: Dwarf_Word = 0
        if dwarf_attr(&unitEntry, UInt32(DW_AT_GNU_addr_base), &attribute) != nil
            || dwarf_attr(&unitEntry, UInt32(DW_AT_addr_base), &attribute) != nil,
            dwarf_formudata(&attribute, &addressBase) != 0
        {
            addressBase = 0
        }
        let loclistsBase =
            dwarf_attr(&unitEntry, UInt32(DW_AT_loclists_base), &attribute) != nil
            ? Self.sectionOffset(in: attribute, size: Int(offsetSize)) : nil
        return LocationListUnit(
            version: Int(version), addressSize: Int(addressSize), offsetSize: Int(offsetSize), baseAddress: base,
            addresses: DWARFAddressTable(section: addressSection, base: addressBase, addressSize: Int(addressSize)),
            loclistsBase: loclistsBase)
    }

    /// The `DW_AT_location` of a parameter at the entry `address` of its function.
    func location(of entry: inout Dwarf_Die, at address: Dwarf_Addr, unit: LocationListUnit) -> FoundLocation {
        var attribute = Dwarf_Attribute()
        guard dwarf_attr(&entry, UInt32(DW_AT_location), &attribute) != nil else { return .operations(nil) }
        let start: LocationListRequest.Start?
        switch Int(dwarf_whatform(&attribute)) {
        case Int(DW_FORM_sec_offset):
            start = Self.sectionOffset(in: attribute, size: unit.offsetSize).map { .offset($0) }
        case Int(DW_FORM_data4) where unit.version < 4, Int(DW_FORM_data8) where unit.version < 4:
            start = Self.sectionOffset(in: attribute, size: dwarf_whatform(&attribute) == DW_FORM_data8 ? 8 : 4)
                .map { .offset($0) }
        case Int(DW_FORM_loclistx):
            var index: Dwarf_Word = 0
            start = dwarf_formudata(&attribute, &index) == 0 ? .index(index) : nil
        default:
            start = nil
        }
        if let start {
            return .list(LocationListRequest(start: start, address: address, unit: unit))
        }
        var expression: UnsafeMutablePointer<Dwarf_Op>?
        var length = 0
        guard dwarf_getlocation_addr(&attribute, address, &expression, &length, 1) > 0, let expression else {
            return .operations(nil)
        }
        return .operations(
            UnsafeBufferPointer(start: expression, count: length).map {
                DWARFOperation(atom: $0.atom, operand: $0.number)
            })
    }

    /// The section offset `attribute` holds. libdw reads one only after checking it against the
    /// section it points into, which it is not shown (see `hideFromLibdw`): it is read as the
    /// constant of the same size instead, which libdw checks against the unit's bytes.
    private static func sectionOffset(in attribute: Dwarf_Attribute, size: Int) -> UInt64? {
        var constant = attribute
        constant.code = UInt32(DW_AT_byte_size)
        constant.form = UInt32(size == 8 ? DW_FORM_data8 : DW_FORM_data4)
        var value: Dwarf_Word = 0
        return dwarf_formudata(&constant, &value) == 0 ? value : nil
    }

    /// The operations at their function's entry of each parameter's location, each section's
    /// lists read in one pass over it.
    ///
    /// - Throws: ``Unreadable`` when a list, or the section it is in, is damaged.
    func locationOperations(of parameters: [FoundParameter]) throws -> [[DWARFOperation]?] {
        var operations: [[DWARFOperation]?] = []
        var lists: [(index: Int, request: LocationListRequest)] = []
        for (index, parameter) in parameters.enumerated() {
            switch parameter.location {
            case .operations(let found): operations.append(found)
            case .list(let request):
                operations.append(nil)
                lists.append((index, request))
            }
        }
        for (sectionName, lists) in Dictionary(grouping: lists, by: \.request.unit.sectionName) {
            guard let section = locationListSections[sectionName] else {
                throw Unreadable(
                    reason: "parameters have location lists in \(sectionName), which the file does not have")
            }
            let requests = lists.map(\.request)
            let offsets = try listOffsets(of: requests, in: section)
            let found = try section.read("location list", at: offsets) { index, list in
                try LocationList.operations(at: requests[index].address, in: &list, unit: requests[index].unit)
            }
            for (list, listOperations) in zip(lists, found) {
                operations[list.index] = listOperations
            }
        }
        return operations
    }

    /// Where each list starts in `section`: the offset given, or the one at its index in the
    /// unit's table of offsets, which starts at `DW_AT_loclists_base` (DWARF 5, section 7.29).
    private func listOffsets(of requests: [LocationListRequest], in section: LocationListSection) throws -> [UInt64] {
        var offsets: [UInt64] = []
        var indexed: [(request: Int, slot: UInt64, base: UInt64)] = []
        for (position, request) in requests.enumerated() {
            offsets.append(0)
            switch request.start {
            case .offset(let offset):
                offsets[position] = offset
            case .index(let index):
                guard let base = request.unit.loclistsBase else {
                    throw Unreadable(reason: "a location list is named by index in a unit without DW_AT_loclists_base")
                }
                let (slot, overflow) = index.multipliedReportingOverflow(by: UInt64(request.unit.offsetSize))
                guard !overflow, slot <= UInt64.max - base else {
                    throw Unreadable(reason: "location list index \(index) lies past the end of \(section.name)")
                }
                indexed.append((position, base + slot, base))
            }
        }
        let relativeOffsets = try section.read("location list offset", at: indexed.map(\.slot)) { index, slot in
            try slot.unsigned(size: requests[indexed[index].request].unit.offsetSize)
        }
        for (list, relative) in zip(indexed, relativeOffsets) {
            offsets[list.request] = list.base &+ relative
        }
        return offsets
    }
}
