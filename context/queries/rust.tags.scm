; Rust tags (conventions as in python.tags.scm).

[
  (struct_item
    name: (type_identifier) @name.definition.class)
  (enum_item
    name: (type_identifier) @name.definition.class)
  (union_item
    name: (type_identifier) @name.definition.class)
] @definition.class

(type_item
  name: (type_identifier) @name.definition.type) @definition.type

(trait_item
  name: (type_identifier) @name.definition.interface) @definition.interface

(declaration_list
  [
    (function_item
      name: (identifier) @name.definition.method)
    (function_signature_item
      name: (identifier) @name.definition.method)
  ] @definition.method)

(function_item
  name: (identifier) @name.definition.function) @definition.function

(mod_item
  name: (identifier) @name.definition.module) @definition.module

(macro_definition
  name: (identifier) @name.definition.macro) @definition.macro

[
  (const_item
    name: (identifier) @name.definition.constant)
  (static_item
    name: (identifier) @name.definition.constant)
] @definition.constant

(field_declaration
  name: (field_identifier) @name.definition.field) @definition.field

(call_expression
  function: [
    (identifier) @name.reference.call
    (field_expression
      field: (field_identifier) @name.reference.call)
    (scoped_identifier
      name: (identifier) @name.reference.call)
  ])

(macro_invocation
  macro: (identifier) @name.reference.call)

(impl_item
  trait: (type_identifier) @name.reference.implementation)

(impl_item
  type: (type_identifier) @name.reference.implementation)

(type_identifier) @name.reference.type

(use_declaration
  argument: (_) @import.module)

(mod_item
  name: (identifier) @import.module
  !body)
