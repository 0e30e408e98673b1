; TypeScript / TSX nodes that shape a completion span (see python.spans.scm).

(comment) @ctx.comment
[
  (string)
  (template_string)
  (regex)
] @ctx.string

[
  (statement_block)
  (class_body)
  (interface_body)
  (enum_body)
  (switch_body)
] @span.block
[
  (arguments)
  (formal_parameters)
  (type_arguments)
] @span.args
[
  (object)
  (array)
  (object_type)
] @span.literal

[
  (function_declaration)
  (generator_function_declaration)
  (function_expression)
  (arrow_function)
  (method_definition)
] @scope.function
[
  (class_declaration)
  (abstract_class_declaration)
  (interface_declaration)
  (enum_declaration)
] @scope.class
