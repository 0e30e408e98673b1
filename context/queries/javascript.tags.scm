; JavaScript tags (conventions as in python.tags.scm).

[
  (function_declaration
    name: (identifier) @name.definition.function)
  (generator_function_declaration
    name: (identifier) @name.definition.function)
] @definition.function

[
  (class_declaration
    name: (identifier) @name.definition.class)
  (class
    name: (identifier) @name.definition.class)
] @definition.class

(method_definition
  name: (property_identifier) @name.definition.method) @definition.method

(field_definition
  property: (property_identifier) @name.definition.field) @definition.field

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

(assignment_expression
  left: (member_expression
    property: (property_identifier) @name.definition.function)
  right: [(arrow_function) (function_expression)]) @definition.function

(call_expression
  function: [
    (identifier) @name.reference.call
    (member_expression
      property: (property_identifier) @name.reference.call)
  ])

(new_expression
  constructor: (identifier) @name.reference.class)

(class_heritage
  (identifier) @name.reference.class)

(import_statement
  source: (string
    (string_fragment) @import.module))

(import_specifier
  name: (identifier) @name.reference.import)

(call_expression
  function: (identifier) @_require
  arguments: (arguments
    (string
      (string_fragment) @import.module))
  (#eq? @_require "require"))
