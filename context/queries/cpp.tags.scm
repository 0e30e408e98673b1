; C++ tags (conventions as in python.tags.scm).

(function_definition
  declarator: [
    (function_declarator
      declarator: (identifier) @name.definition.function)
    (pointer_declarator
      declarator: (function_declarator
        declarator: (identifier) @name.definition.function))
    (reference_declarator
      (function_declarator
        declarator: (identifier) @name.definition.function))
  ]) @definition.function

(function_definition
  declarator: (function_declarator
    declarator: [
      (field_identifier) @name.definition.method
      (qualified_identifier
        name: (identifier) @name.definition.method)
    ])) @definition.method

(declaration
  declarator: (function_declarator
    declarator: (identifier) @name.definition.function)) @definition.function

(field_declaration
  declarator: (function_declarator
    declarator: (field_identifier) @name.definition.method)) @definition.method

[
  (struct_specifier
    name: (type_identifier) @name.definition.class
    body: (_))
  (class_specifier
    name: (type_identifier) @name.definition.class
    body: (_))
  (union_specifier
    name: (type_identifier) @name.definition.class
    body: (_))
] @definition.class

(enum_specifier
  name: (type_identifier) @name.definition.type
  body: (_)) @definition.type

[
  (type_definition
    declarator: (type_identifier) @name.definition.type)
  (alias_declaration
    name: (type_identifier) @name.definition.type)
] @definition.type

(namespace_definition
  name: (namespace_identifier) @name.definition.module) @definition.module

[
  (preproc_def
    name: (identifier) @name.definition.macro)
  (preproc_function_def
    name: (identifier) @name.definition.macro)
] @definition.macro

(call_expression
  function: [
    (identifier) @name.reference.call
    (field_expression
      field: (field_identifier) @name.reference.call)
    (qualified_identifier
      name: (identifier) @name.reference.call)
  ])

(type_identifier) @name.reference.type

(base_class_clause
  (type_identifier) @name.reference.class)

(preproc_include
  path: (_) @import.module)
