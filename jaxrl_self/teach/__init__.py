"""Self-improvement methods on the shared LM-RL layer (:mod:`jaxrl_self.lm`), one readable file per method:

* :mod:`jaxrl_self.teach.ttrl`: test-time RL on unlabeled problems (majority vote, and its label-free
  successors: novelty, self-certainty, semantic entropy; an answer-flip guard against collapse);
* :mod:`jaxrl_self.teach.label_free`: the pure functions they share (votes, label-free rewards, the flip signal,
  the ground-truth diagnostics), unit-tested on hand-made sample sets;
* :mod:`jaxrl_self.teach.rlt`: reinforcement-learned teachers (a teacher shown the solution writes explanations,
  paid by how well a frozen student understands them), and distillation of fresh students from them;
* :mod:`jaxrl_self.teach.explain`: RLT's contexts, spans, explanation parser and reward, as pure functions;
* :mod:`jaxrl_self.teach.soar`: SOAR, a teacher that writes problems, paid by the students' measured progress on
  hard problems they cannot solve, with the g x r inner student runs vmapped inside one outer step.
"""
