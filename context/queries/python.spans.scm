; Python nodes that shape a completion span. @ctx.* : where not to suggest by default;
; @span.* : the kind of hole; @scope.* : enclosing definitions whose header is context.

(comment) @ctx.comment
(string) @ctx.string

(block) @span.block
[
  (argument_list)
  (parameters)
] @span.args
[
  (dictionary)
  (list)
  (set)
] @span.literal

[
  (function_definition)
  (lambda)
] @scope.function
(class_definition) @scope.class
