; JavaScript nodes that shape a completion span (see python.spans.scm).

(comment) @ctx.comment
[
  (string)
  (template_string)
  (regex)
] @ctx.string

[
  (statement_block)
  (class_body)
  (switch_body)
] @span.block
[
  (arguments)
  (formal_parameters)
] @span.args
[
  (object)
  (array)
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
  (class)
] @scope.class
