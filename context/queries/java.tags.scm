; Java tags (conventions as in python.tags.scm).

[
  (class_declaration
    name: (identifier) @name.definition.class)
  (enum_declaration
    name: (identifier) @name.definition.class)
  (record_declaration
    name: (identifier) @name.definition.class)
] @definition.class

(interface_declaration
  name: (identifier) @name.definition.interface) @definition.interface

[
  (method_declaration
    name: (identifier) @name.definition.method)
  (constructor_declaration
    name: (identifier) @name.definition.method)
] @definition.method

(field_declaration
  declarator: (variable_declarator
    name: (identifier) @name.definition.field)) @definition.field

(method_invocation
  name: (identifier) @name.reference.call)

(object_creation_expression
  type: (type_identifier) @name.reference.class)

(superclass
  (type_identifier) @name.reference.class)

(super_interfaces
  (type_list
    (type_identifier) @name.reference.implementation))

(type_identifier) @name.reference.type

(import_declaration
  (scoped_identifier) @import.module)
