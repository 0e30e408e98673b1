; C tags (conventions as in python.tags.scm). Prototypes count as definitions: in C they
; are what a caller needs to see.

(function_definition
  declarator: [
    (function_declarator
      declarator: (identifier) @name.definition.function)
    (pointer_declarator
      declarator: (function_declarator
        declarator: (identifier) @name.definition.function))
  ]) @definition.function

(declaration
  declarator: [
    (function_declarator
      declarator: (identifier) @name.definition.function)
    (pointer_declarator
      declarator: (function_declarator
        declarator: (identifier) @name.definition.function))
  ]) @definition.function

[
  (struct_specifier
    name: (type_identifier) @name.definition.class
    body: (_))
  (union_specifier
    name: (type_identifier) @name.definition.class
    body: (_))
] @definition.class

(enum_specifier
  name: (type_identifier) @name.definition.type
  body: (_)) @definition.type

(type_definition
  declarator: (type_identifier) @name.definition.type) @definition.type

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
  ])

(type_identifier) @name.reference.type

(preproc_include
  path: (_) @import.module)
