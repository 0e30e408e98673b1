; Python tags. Captures: @name.definition.<kind> on the name, @definition.<kind> on the
; whole definition; @name.reference.<kind>; @import.module on an imported module path.

(class_definition
  name: (identifier) @name.definition.class) @definition.class

(class_definition
  body: (block
    (function_definition
      name: (identifier) @name.definition.method) @definition.method))

(class_definition
  body: (block
    (decorated_definition
      definition: (function_definition
        name: (identifier) @name.definition.method) @definition.method)))

(function_definition
  name: (identifier) @name.definition.function) @definition.function

(class_definition
  body: (block
    (expression_statement
      (assignment
        left: (identifier) @name.definition.field)) @definition.field))

(module
  (expression_statement
    (assignment
      left: (identifier) @name.definition.constant)) @definition.constant)

(call
  function: [
    (identifier) @name.reference.call
    (attribute
      attribute: (identifier) @name.reference.call)
  ])

(class_definition
  superclasses: (argument_list
    [
      (identifier) @name.reference.class
      (attribute
        attribute: (identifier) @name.reference.class)
    ]))

(type
  (identifier) @name.reference.type)

(import_statement
  name: [
    (dotted_name) @import.module
    (aliased_import
      name: (dotted_name) @import.module)
  ])

(import_from_statement
  module_name: [
    (dotted_name)
    (relative_import)
  ] @import.module)

; `from pkg import mod` may import a module: @import.name is tried as module + "." + name
(import_from_statement
  module_name: (_) @import.module
  name: [
    (dotted_name) @import.name
    (aliased_import
      name: (dotted_name) @import.name)
  ])

(import_from_statement
  name: [
    (dotted_name
      (identifier) @name.reference.import)
    (aliased_import
      name: (dotted_name
        (identifier) @name.reference.import))
  ])
