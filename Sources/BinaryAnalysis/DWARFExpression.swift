import CLibDW

/// One DWARF expression operation, as libdw decodes it: the operation and its first operand (for
/// an operand that is a block, the block's length).
struct DWARFOperation: Equatable {
    var atom: UInt8
    var operand: UInt64
}

extension DWARFOperation {
    /// Decodes a location expression as libdw's `__libdw_intern_expression` (elfutils 0.188) does.
    ///
    /// - Returns: nil where libdw fails too: an operation it does not know, or operands cut short.
    static func operations(of expression: UnsafeRawBufferPointer, unit: LocationListUnit) -> [DWARFOperation]? {
        var cursor = ByteCursor(expression)
        var operations: [DWARFOperation] = []
        while !cursor.isAtEnd {
            guard let atom = try? cursor.byte(), let operand = try? operand(of: atom, from: &cursor, unit: unit) else {
                return nil
            }
            operations.append(DWARFOperation(atom: atom, operand: operand))
        }
        return operations
    }

    /// Reads the operands of `atom`, returning the first as libdw keeps it (signed ones as their bit pattern).
    /// Throws ``ByteCursor/End`` for operands cut short; nil for an operation libdw does not know.
    private static func operand(of atom: UInt8, from cursor: inout ByteCursor, unit: LocationListUnit) throws -> UInt64?
    {
        switch Int(atom) {
        case Int(DW_OP_addr):
            return try cursor.unsigned(size: unit.addressSize)
        case Int(DW_OP_call_ref), Int(DW_OP_GNU_variable_value):
            return try cursor.unsigned(size: unit.referenceSize)
        case Int(DW_OP_deref), Int(DW_OP_dup)...Int(DW_OP_over), Int(DW_OP_swap)...Int(DW_OP_plus),
            Int(DW_OP_shl)...Int(DW_OP_xor), Int(DW_OP_eq)...Int(DW_OP_ne), Int(DW_OP_lit0)...Int(DW_OP_reg31),
            Int(DW_OP_nop), Int(DW_OP_push_object_address), Int(DW_OP_form_tls_address), Int(DW_OP_call_frame_cfa),
            Int(DW_OP_stack_value), Int(DW_OP_GNU_push_tls_address), Int(DW_OP_GNU_uninit):
            return 0
        case Int(DW_OP_const1u), Int(DW_OP_pick), Int(DW_OP_deref_size), Int(DW_OP_xderef_size):
            return try cursor.unsigned(size: 1)
        case Int(DW_OP_const1s):
            return UInt64(bitPattern: try cursor.signed(size: 1))
        case Int(DW_OP_const2u):
            return try cursor.unsigned(size: 2)
        case Int(DW_OP_const2s), Int(DW_OP_skip), Int(DW_OP_bra), Int(DW_OP_call2):
            return UInt64(bitPattern: try cursor.signed(size: 2))
        case Int(DW_OP_const4u):
            return try cursor.unsigned(size: 4)
        case Int(DW_OP_const4s), Int(DW_OP_call4), Int(DW_OP_GNU_parameter_ref):
            return UInt64(bitPattern: try cursor.signed(size: 4))
        case Int(DW_OP_const8u), Int(DW_OP_const8s):
            return try cursor.unsigned(size: 8)
        case Int(DW_OP_constu), Int(DW_OP_plus_uconst), Int(DW_OP_regx), Int(DW_OP_piece), Int(DW_OP_addrx),
            Int(DW_OP_constx), Int(DW_OP_convert), Int(DW_OP_reinterpret), Int(DW_OP_GNU_convert),
            Int(DW_OP_GNU_reinterpret), Int(DW_OP_GNU_addr_index), Int(DW_OP_GNU_const_index):
            return try cursor.unsignedLEB128()
        case Int(DW_OP_consts), Int(DW_OP_breg0)...Int(DW_OP_breg31), Int(DW_OP_fbreg):
            return UInt64(bitPattern: try cursor.signedLEB128())
        case Int(DW_OP_bregx):
            let register = try cursor.unsignedLEB128()
            _ = try cursor.signedLEB128()
            return register
        case Int(DW_OP_bit_piece), Int(DW_OP_regval_type), Int(DW_OP_GNU_regval_type):
            let first = try cursor.unsignedLEB128()
            _ = try cursor.unsignedLEB128()
            return first
        case Int(DW_OP_implicit_value), Int(DW_OP_entry_value), Int(DW_OP_GNU_entry_value):
            let length = try cursor.unsignedLEB128()
            _ = try cursor.bytes(count: length)
            return length
        case Int(DW_OP_implicit_pointer), Int(DW_OP_GNU_implicit_pointer):
            let entry = try cursor.unsigned(size: unit.referenceSize)
            _ = try cursor.unsignedLEB128()
            return entry
        case Int(DW_OP_deref_type), Int(DW_OP_xderef_type), Int(DW_OP_GNU_deref_type):
            let size = try cursor.unsigned(size: 1)
            _ = try cursor.unsignedLEB128()
            return size
        case Int(DW_OP_const_type), Int(DW_OP_GNU_const_type):
            let type = try cursor.unsignedLEB128()
            _ = try cursor.bytes(count: try cursor.unsigned(size: 1))
            return type
        default:
            return nil
        }
    }
}
