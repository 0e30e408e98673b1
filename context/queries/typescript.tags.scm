; TypeScript and TSX tags (conventions as in python.tags.scm).

[
  (function_declaration
    name: (identifier) @name.definition.function)
  (generator_function_declaration
    name: (identifier) @name.definition.function)
  (function_signature
    name: (identifier) @name.definition.function)
] @definition.function

[
  (class_declaration
    name: (type_identifier) @name.definition.class)
  (abstract_class_declaration
    name: (type_identifier) @name.definition.class)
] @definition.class

(interface_declaration
  name: (type_identifier) @name.definition.interface) @definition.interface

(type_alias_declaration
  name: (type_identifier) @name.definition.type) @definition.type

(enum_declaration
  name: (identifier) @name.definition.type) @definition.type

[
  (method_definition
    name: (property_identifier) @name.definition.method)
  (method_signature
    name: (property_identifier) @name.definition.method)
  (abstract_method_signature
    name: (property_identifier) @name.definition.method)
] @definition.method

[
  (public_field_definition
    name: (property_identifier) @name.definition.field)
  (property_signature
    name: (property_identifier) @name.definition.field)
] @definition.field

(module
  name: (identifier) @name.definition.module) @definition.module

[
  (lexical_declaration
    (variable_declarator
      name: (identifier) @name.definition.function
      value: [(arrow_function) (function_expression)]))
  (variable_declaration
    (variable_declarator
      name: (identifier) @name.definition.function
      value: [(arrow_function) (function_expression)]))
] @definition.function

(program
  [
    (lexical_declaration
      (variable_declarator
        name: (identifier) @name.definition.constant
        value: [(number) (string) (object) (array) (new_expression) (call_expression) (member_expression)]))
    (export_statement
      declaration: (lexical_declaration
        (variable_declarator
          name: (identifier) @name.definition.constant
          value: [(number) (string) (object) (array) (new_expression) (call_expression) (member_expression)])))
  ] @definition.constant)

(call_expression
  function: [
    (identifier) @name.reference.call
    (member_expression
      property: (property_identifier) @name.reference.call)
  ])

(new_expression
  constructor: (identifier) @name.reference.class)

(extends_clause
  value: (identifier) @name.reference.class)

(implements_clause
  (type_identifier) @name.reference.implementation)

(type_annotation
  (type_identifier) @name.reference.type)

(generic_type
  name: (type_identifier) @name.reference.type)

(import_statement
  source: (string
    (string_fragment) @import.module))

(import_specifier
  name: (identifier) @name.reference.import)
