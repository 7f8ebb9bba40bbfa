"""Ticket search: masks, pruning strategies, ticket files, IMP with rewinding, controls."""
from .controls import CONTROLS, make_control, perturb, random_prune, reinit
from .finder import (SearchSpec, convergence, default_search_lr, find_ticket, retrain_schedule, search_defaults)
from .masks import (apply_mask, conv_bn_pairs, count, dense_mask, full_mask, output_layer, prunable_weights,
                    sparsity_report)
from .rst import RST_METHODS, TRANSFORM_DEFAULTS, EtaSchedule, RSTConfig, RSTPenalty, cycle_sparsities, random_pick
from .strategies import (STRATEGY_NAMES, GlobalMagnitude, GlobalNormalized, Layerwise, Movement, RandomPruning,
                         make_strategy)
from .ticket import Ticket, TicketError, load_ticket, save_ticket, ticket_model

__all__ = ["CONTROLS", "make_control", "perturb", "random_prune", "reinit", "SearchSpec", "convergence",
           "default_search_lr", "find_ticket", "retrain_schedule", "search_defaults", "apply_mask", "conv_bn_pairs",
           "count", "dense_mask", "full_mask", "output_layer", "prunable_weights", "sparsity_report",
           "STRATEGY_NAMES", "GlobalMagnitude", "GlobalNormalized", "Layerwise", "Movement", "RandomPruning",
           "make_strategy", "RST_METHODS", "TRANSFORM_DEFAULTS", "EtaSchedule", "RSTConfig", "RSTPenalty",
           "cycle_sparsities", "random_pick", "Ticket", "TicketError", "load_ticket", "save_ticket", "ticket_model"]
