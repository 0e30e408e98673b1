; Java nodes that shape a completion span (see python.spans.scm).

[
  (line_comment)
  (block_comment)
] @ctx.comment
[
  (string_literal)
  (character_literal)
] @ctx.string

[
  (block)
  (class_body)
  (interface_body)
  (constructor_body)
  (enum_body)
  (switch_block)
] @span.block
[
  (argument_list)
  (formal_parameters)
] @span.args
(array_initializer) @span.literal

[
  (method_declaration)
  (constructor_declaration)
  (lambda_expression)
] @scope.function
[
  (class_declaration)
  (interface_declaration)
  (enum_declaration)
  (record_declaration)
] @scope.class
