; Go tags (conventions as in python.tags.scm).

(function_declaration
  name: (identifier) @name.definition.function) @definition.function

(method_declaration
  name: (field_identifier) @name.definition.method) @definition.method

(type_declaration
  (type_spec
    name: (type_identifier) @name.definition.type)) @definition.type

(method_elem
  name: (field_identifier) @name.definition.method) @definition.method

(source_file
  [
    (const_declaration
      (const_spec
        name: (identifier) @name.definition.constant))
    (var_declaration
      (var_spec
        name: (identifier) @name.definition.constant))
  ] @definition.constant)

(call_expression
  function: [
    (identifier) @name.reference.call
    (selector_expression
      field: (field_identifier) @name.reference.call)
    (parenthesized_expression
      (identifier) @name.reference.call)
  ])

(type_identifier) @name.reference.type

(composite_literal
  type: (type_identifier) @name.reference.class)

(import_spec
  path: (_) @import.module)
